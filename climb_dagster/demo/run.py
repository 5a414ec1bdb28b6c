"""The demo driver: lay out a landing folder, register drops, materialize every stage that exists."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import dagster as dg

from climb_dagster.demo.landing import prepare_landing


def _materialize_drop_stage(defs: dg.Definitions, instance: dg.DagsterInstance, selection: str, keys: list[str]) -> None:
    for key in keys:
        result = dg.materialize(
            list(defs.assets or []),
            selection=selection,
            partition_key=key,
            instance=instance,
            resources=defs.resources,
        )
        if not result.success:
            raise RuntimeError(f"demo stage {selection!r} failed for drop {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m climb_dagster.demo")
    parser.add_argument("--docs-per-drop", type=int, default=800, help="seeded subset of each demo drop (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("CLIMB_HOME", os.path.abspath(".climb"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(os.environ["CLIMB_HOME"])
    start = time.perf_counter()

    from climb_dagster.definitions import defs
    from climb_dagster.partitions import crawl_drops

    landing = Path(os.environ.get("CLIMB_LANDING_URL", home / "landing"))
    written = prepare_landing(landing, args.docs_per_drop or None, seed=args.seed)
    print(f"landing: {landing} <- {written}")

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    keys = sorted(written)
    instance.add_dynamic_partitions(crawl_drops.name, keys)
    _materialize_drop_stage(defs, instance, "raw_documents", keys)
    print(f"raw_documents materialized for {keys} in {time.perf_counter() - start:.1f}s")
    print(f"assets stored under {home / 'storage'}; browse them with `make ui` (Dagster at http://127.0.0.1:3000)")
    return 0

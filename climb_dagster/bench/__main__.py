"""Dispatch `python -m climb_dagster.bench NAME [options]` to climb_dagster.bench.NAME.

Each bench module defines `add_arguments(parser)` and `run(args) -> dict`; the dict is printed as JSON.
Modules are imported only when chosen, so a bench's heavy imports never slow the others.
`--save results/NAME.json` also writes that JSON with a meta block (date, machine, command), the results file
README.md and docs/ generate their tables from (`python -m climb_dagster.bench.results`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path

from climb_dagster.bench.results import save

BENCHES = {
    "search": "climb_dagster.bench.search",
    "cluster": "climb_dagster.bench.cluster",
    "embed": "climb_dagster.bench.embed",
    "proxy": "climb_dagster.bench.proxy",
    "demo-gain": "climb_dagster.bench.demo_gain",
    "e2e": "climb_dagster.bench.e2e",
    "reuse": "climb_dagster.bench.reuse",
    "scale": "climb_dagster.bench.scale",
    "cost": "climb_dagster.bench.cost",
    "transfer": "climb_dagster.bench.transfer",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in BENCHES:
        print(f"usage: python -m climb_dagster.bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    name = argv[0]
    saving = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    saving.add_argument("--save", type=Path, default=None)
    known, rest = saving.parse_known_args(argv[1:])
    module = importlib.import_module(BENCHES[name])
    parser = argparse.ArgumentParser(prog=f"python -m climb_dagster.bench {name}")
    parser.add_argument("--save", type=Path, metavar="results/NAME.json", help="also write a results file")
    module.add_arguments(parser)
    result = module.run(parser.parse_args(rest))
    print(json.dumps(result, indent=2, sort_keys=False))
    if known.save is not None:
        save(known.save, result, shlex.join(["python", "-m", "climb_dagster.bench", name, *rest]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

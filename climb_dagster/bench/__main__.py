"""Dispatch `python -m climb_dagster.bench NAME [options]` to climb_dagster.bench.NAME.

Each bench module defines `add_arguments(parser)` and `run(args) -> dict`; the dict is printed as JSON.
Modules are imported only when chosen, so a bench's heavy imports never slow the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHES = {
    "search": "climb_dagster.bench.search",
    "cluster": "climb_dagster.bench.cluster",
    "embed": "climb_dagster.bench.embed",
    "proxy": "climb_dagster.bench.proxy",
    "demo-gain": "climb_dagster.bench.demo_gain",
    "e2e": "climb_dagster.bench.e2e",
    "cost": "climb_dagster.bench.cost",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in BENCHES:
        print(f"usage: python -m climb_dagster.bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(BENCHES[name])
    parser = argparse.ArgumentParser(prog=f"python -m climb_dagster.bench {name}")
    module.add_arguments(parser)
    result = module.run(parser.parse_args(rest))
    print(json.dumps(result, indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

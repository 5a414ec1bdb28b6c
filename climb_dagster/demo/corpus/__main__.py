"""`python -m climb_dagster.demo.corpus --out DIR`: build the demo corpus from installed Debian packages."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from climb_dagster.demo.corpus.build import BuildConfig, build
from climb_dagster.demo.corpus.unit import DEFAULT_ROOTS, MissingSourceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m climb_dagster.demo.corpus", description=__doc__)
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for the drops, NOTICE and README.md"
    )
    parser.add_argument("--docs-per-domain", type=int, default=BuildConfig.docs_per_domain)
    parser.add_argument("--seed", type=int, default=BuildConfig.seed)
    parser.add_argument(
        "--root",
        type=Path,
        action="append",
        help=f"where to look for package files (default: {DEFAULT_ROOTS})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = BuildConfig(docs_per_domain=args.docs_per_domain, seed=args.seed)
    try:
        build(args.out, config, tuple(args.root) if args.root else DEFAULT_ROOTS)
    except MissingSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

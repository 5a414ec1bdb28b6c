"""`python -m climb_dagster.quality train --input labelled.jsonl --output rater.bin`: train a fastText rater
from labelled JSONL (text, score 1-5) and print its held-out accuracy and the model's sha256 as JSON (a raters
file entry pins the model with it: `{dimension: quality, model: rater.bin, sha256: ...}`)."""

from __future__ import annotations

import argparse
import json
import sys

from climb_dagster.core.common.errors import ClimbInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m climb_dagster.quality")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a fastText rater from labelled JSONL")
    train.add_argument("--input", required=True, help="JSONL with a text and a score (1-5) per line")
    train.add_argument("--output", required=True, help="where to write the fastText .bin model")
    train.add_argument("--text-field", default="text")
    train.add_argument("--score-field", default="score")
    train.add_argument("--holdout", type=float, default=0.2, help="share held out for the accuracy")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epoch", type=int, default=25)
    train.add_argument("--lr", type=float, default=0.5)
    train.add_argument("--word-ngrams", type=int, default=2)
    train.add_argument("--dim", type=int, default=64)
    args = parser.parse_args(argv)

    from climb_dagster.core.quality.train import RaterTrainConfig, read_labelled, train_rater

    try:
        texts, scores = read_labelled(args.input, args.text_field, args.score_field)
        config = RaterTrainConfig(args.holdout, args.seed, args.epoch, args.lr, args.word_ngrams, args.dim)
        report = train_rater(texts, scores, args.output, config)
    except ClimbInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

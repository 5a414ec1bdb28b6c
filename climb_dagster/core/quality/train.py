"""Train a fastText quality rater from labelled JSONL (text, score 1-5), as the paper does from LLM labels.

Each line is `{"text": ..., "score": 1..5}` (the paper's annotator scores; fractional scores are rounded).
A seeded share of the rows is held out; the report gives exact-label accuracy, accuracy within one point,
the mean absolute error of the expected score (what `FastTextRater` returns), and the majority-label
baseline on the same held-out rows, and the model file's sha256 (pin it in the raters file). The model is
written to a temporary name, then renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.model_file import file_sha256

# fasttext-numpy2 0.10.4 leaves weights uninitialised with fewer threads (seen on this project's
# machines); its multithreaded (Hogwild) training is not bit-for-bit deterministic.
MIN_THREADS = 10
# ... and even with them, now and then stops with "Encountered NaN" (uninitialised blocks): train again with the
# next seed, a few times, before giving up.
NAN_ATTEMPTS = 5


def train_supervised(path: str | Path, seed: int, **args):
    """fastText's supervised training from a labelled file, retried with seed+1, seed+2, ... on its NaN failure."""
    import fasttext

    for attempt in range(NAN_ATTEMPTS):
        try:
            return fasttext.train_supervised(input=str(path), seed=seed + attempt, verbose=0, **args)
        except RuntimeError as exc:
            if "NaN" not in str(exc) or attempt == NAN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class RaterTrainConfig:
    holdout: float = 0.2
    seed: int = 0
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 64
    min_count: int = 1
    threads: int = MIN_THREADS

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 1:
            raise ClimbInputError(f"holdout={self.holdout!r}: must be in (0, 1)")
        for name in ("epoch", "word_ngrams", "dim", "min_count"):
            if getattr(self, name) < 1:
                raise ClimbInputError(f"{name}={getattr(self, name)!r}: must be >= 1")
        if not self.lr > 0:
            raise ClimbInputError(f"lr={self.lr!r}: must be > 0")


@dataclass(frozen=True)
class RaterTrainReport:
    model_path: str
    n_train: int
    n_heldout: int
    labels: dict[str, int]
    heldout_accuracy: float
    heldout_within_one: float
    heldout_mae: float
    majority_accuracy: float
    sha256: str  # of the model file: a raters entry's `sha256` pins it

    def to_dict(self) -> dict:
        return asdict(self)


def read_labelled(
    path: str | Path, text_field: str = "text", score_field: str = "score"
) -> tuple[list[str], np.ndarray]:
    """(texts, integer scores 1-5) from JSONL; errors name the file, line and field."""
    p = Path(path)
    if not p.is_file():
        raise ClimbInputError(f"labelled file {str(p)!r} not found")
    texts: list[str] = []
    scores: list[int] = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ClimbInputError(f"{p}:{n}: not JSON ({exc})") from exc
            text, score = row.get(text_field), row.get(score_field)
            if not isinstance(text, str) or not text.strip():
                raise ClimbInputError(
                    f"{p}:{n}: field {text_field!r} must be a non-empty string, got {text!r}"
                )
            if isinstance(score, bool) or not isinstance(score, int | float) or not 1 <= score <= 5:
                raise ClimbInputError(
                    f"{p}:{n}: field {score_field!r} must be a number in [1, 5], got {score!r}"
                )
            texts.append(" ".join(text.split()))  # fastText reads one line per example
            scores.append(int(round(score)))
    if len(texts) < 10:
        raise ClimbInputError(f"{p}: {len(texts)} labelled rows; need at least 10")
    return texts, np.asarray(scores)


def train_rater(
    texts: list[str], scores: np.ndarray, out_path: str | Path, config: RaterTrainConfig | None = None
) -> RaterTrainReport:
    """Train on a seeded split, evaluate on the held-out rows, save the model to `out_path`."""

    from climb_dagster.core.quality.fasttext_rater import FastTextRater

    config = config or RaterTrainConfig()
    n = len(texts)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(n)
    n_held = max(1, int(round(config.holdout * n)))
    held, train = order[:n_held], order[n_held:]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="climb-rater-") as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("".join(f"__label__{scores[i]} {texts[i]}\n" for i in train), encoding="utf-8")
        model = train_supervised(
            data,
            config.seed,
            epoch=config.epoch,
            lr=config.lr,
            wordNgrams=config.word_ngrams,
            dim=config.dim,
            minCount=config.min_count,
            thread=max(MIN_THREADS, config.threads),
        )
        tmp_model = out.with_name(out.name + ".tmp")
        model.save_model(str(tmp_model))
        os.replace(tmp_model, out)
    held_texts = [texts[i] for i in held]
    truth = scores[held]
    labels, _ = model.predict(held_texts, k=1)
    predicted = np.array([int(lab[0].removeprefix("__label__")) for lab in labels])
    import polars as pl

    expected = FastTextRater(str(out)).rate(pl.DataFrame({"text": held_texts}))
    values, counts = np.unique(scores[train], return_counts=True)
    majority = int(values[np.argmax(counts)])
    return RaterTrainReport(
        model_path=str(out),
        n_train=int(train.size),
        n_heldout=int(held.size),
        labels={str(v): int(c) for v, c in zip(*np.unique(scores, return_counts=True), strict=True)},
        heldout_accuracy=round(float((predicted == truth).mean()), 4),
        heldout_within_one=round(float((np.abs(predicted - truth) <= 1).mean()), 4),
        heldout_mae=round(float(np.abs(expected - truth).mean()), 4),
        majority_accuracy=round(float((truth == majority).mean()), 4),
        sha256=file_sha256(out),
    )

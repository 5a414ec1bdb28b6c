"""A quality rater from a user's fastText classifier (`fasttext.train_supervised` .bin models).

Labels map to scores: numeric labels (`__label__1` .. `__label__5`, or any numeric range, rescaled to
1–5) or high/low style names; the document's score is the probability-weighted mean over all labels.
The model file is verified before use (core/quality/model_file.py: whole, and its sha256 when pinned), and a
model whose scores do not vary over probe documents (its own vocabulary and a few fixed texts) is refused:
pruning on it would keep or drop clusters on noise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.base import MAX_SCORE, MIN_SCORE, register_rater, require_text
from climb_dagster.core.quality.model_file import check_fasttext_file, check_sha256

NAMED_LABELS = {
    "high": MAX_SCORE,
    "hq": MAX_SCORE,
    "good": MAX_SCORE,
    "positive": MAX_SCORE,
    "pos": MAX_SCORE,
    "low": MIN_SCORE,
    "lq": MIN_SCORE,
    "bad": MIN_SCORE,
    "negative": MIN_SCORE,
    "neg": MIN_SCORE,
    "medium": 3.0,
    "mid": 3.0,
}


def label_values(labels: list[str], overrides: Mapping[str, float] | None, source: str) -> dict[str, float]:
    """Score of each model label (prefix `__label__` stripped); numeric labels outside 1–5 are rescaled."""
    names = [lab.removeprefix("__label__") for lab in labels]
    if overrides:
        missing = [n for n in names if n not in overrides]
        if missing:
            raise ClimbInputError(f"{source}: label_scores has no score for labels {missing}")
        return {n: float(overrides[n]) for n in names}
    if all(re.fullmatch(r"-?\d+(\.\d+)?", n) for n in names):
        values = {n: float(n) for n in names}
        lo, hi = min(values.values()), max(values.values())
        if lo < MIN_SCORE or hi > MAX_SCORE:
            span = hi - lo or 1.0
            values = {n: MIN_SCORE + (v - lo) * (MAX_SCORE - MIN_SCORE) / span for n, v in values.items()}
        return values
    unknown = [n for n in names if n.lower() not in NAMED_LABELS]
    if unknown:
        raise ClimbInputError(
            f"{source}: cannot map labels {unknown} to scores; pass label_scores={{label: score}}"
        )
    return {n: NAMED_LABELS[n.lower()] for n in names}


PROBE_TEXTS = (
    "The committee met on Tuesday to discuss the budget of the new library and the reading rooms.",
    "BUY NOW!!! cheap deal click here free prize win win win $$$",
    "def main():\n    return sum(x * x for x in range(10))",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "lol ok see u tmrw",
    "Die Stadt plant eine neue Brücke über den Fluss, die im Frühjahr eröffnet werden soll.",
    "| id | name | price |\n| 1 | widget | 9.99 |",
    "1 2 3 4 5 6 7 8 9 10",
)
N_VOCAB_PROBES = 16
MIN_SPREAD = 1e-6


class FastTextRater:
    """Expected label score under a fastText classifier.

    Args:
        sha256: the model file's pinned digest (a raters file's `sha256`); a different file is refused.
        source: where the model comes from, for messages (a raters file's `model`; default `model_path`).
    """

    def __init__(
        self,
        model_path: str,
        label_scores: Mapping[str, float] | None = None,
        name: str = "fasttext",
        sha256: str | None = None,
        source: str | None = None,
    ):
        import fasttext

        path = Path(model_path)
        self.source = f"fastText model {source or model_path!r}"
        if not path.is_file():
            raise ClimbInputError(f"{self.source}: file not found")
        if sha256 is not None:
            check_sha256(path, sha256, self.source)
        check_fasttext_file(path, self.source)
        try:
            self.model: Any = fasttext.load_model(str(path))
        except ValueError as exc:
            raise ClimbInputError(f"{self.source}: cannot load ({exc})") from exc
        labels = list(self.model.get_labels())
        values = label_values(labels, label_scores, model_path)
        out_of_scale = {k: v for k, v in values.items() if not MIN_SCORE <= v <= MAX_SCORE}
        if out_of_scale:
            raise ClimbInputError(f"{model_path}: label_scores outside [1, 5]: {out_of_scale}")
        self.values = {f"__label__{k}": v for k, v in values.items()}
        self.name = name
        self.model_path = model_path
        self._check_varies()

    def _check_varies(self) -> None:
        """Refuse a model that gives every probe document the same score (its vocabulary in slices, so a
        model of any language is probed with words it knows, and a few fixed texts)."""
        words = [w for w in self.model.get_words() if w != "</s>"]
        probes = [" ".join(words[i::N_VOCAB_PROBES][:32]) for i in range(min(N_VOCAB_PROBES, len(words)))]
        scores = self.rate(pl.DataFrame({"text": [*probes, *PROBE_TEXTS]}))
        if float(scores.max() - scores.min()) < MIN_SPREAD:
            raise ClimbInputError(
                f"{self.source}: rates all {scores.size} probe documents {scores[0]:.4f}; a "
                "rater whose scores do not vary cannot rank documents (a damaged or untrained model)"
            )

    def rate(self, docs: pl.DataFrame) -> np.ndarray:
        # fastText predicts one line at a time: newlines would split a document.
        texts = require_text(docs, self.name).str.replace_all(r"[\r\n]+", " ").to_list()
        if not texts:
            return np.zeros(0)
        labels, probs = self.model.predict(texts, k=-1)
        scores = np.empty(len(texts))
        for i, (labs, ps) in enumerate(zip(labels, probs, strict=True)):
            p = np.asarray(ps, dtype=np.float64)
            v = np.array([self.values[lab] for lab in labs])
            scores[i] = float((p * v).sum() / max(p.sum(), 1e-12))
        return np.clip(scores, MIN_SCORE, MAX_SCORE)


register_rater("fasttext", FastTextRater)

"""Gopher/C4-style heuristic quality signals, computed with polars expressions and mapped to 1–5.

Each check passes or fails (thresholds from Gopher's quality filter, Rae et al. 2021, and C4, Raffel
et al. 2020); the score is 1 + 4 * (weighted share of checks passed), so a document that passes
everything scores 5 and one that fails everything scores 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.base import MAX_SCORE, MIN_SCORE, register_rater, require_text

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_BULLET = r"^\s*[•\-\*‣▪●◦·–]"
_ELLIPSIS = r"(\.\.\.|…)\s*$"
_TERMINAL = r"[.!?\"'”’)]\s*$"


@dataclass(frozen=True)
class HeuristicThresholds:
    """Pass/fail thresholds; defaults follow Gopher (words, word length, symbols, bullets, ellipsis,
    alphabetic words, stop words, duplicate lines) and C4 (terminal punctuation, curly braces)."""

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_line_fraction: float = 0.9
    max_ellipsis_line_fraction: float = 0.3
    min_alpha_word_fraction: float = 0.8
    min_stop_words: int = 2
    max_duplicate_line_fraction: float = 0.3
    min_terminal_punct_line_fraction: float = 0.5
    max_non_alpha_char_fraction: float = 0.3

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ClimbInputError(f"{name}={value!r}: must be >= 0")
        if self.min_words > self.max_words:
            raise ClimbInputError(f"min_words={self.min_words} > max_words={self.max_words}")


def heuristic_features(texts: pl.Series) -> pl.DataFrame:
    """Per-document signals: words, mean word length, ratios of symbols, bullets, duplicates, ..."""
    text = pl.col("t")
    words = text.str.extract_all(r"\S+")
    lines = (
        text.str.split("\n")
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    n_lines = lines.list.len()
    line_share = lambda pattern: (  # noqa: E731
        lines.list.eval(pl.element().str.contains(pattern).cast(pl.Float64)).list.mean().fill_null(0.0)
    )
    non_space = text.str.count_matches(r"\S")
    stop_hits = pl.sum_horizontal([text.str.contains(rf"(?i)\b{w}\b").cast(pl.Int32) for w in STOP_WORDS])
    frame = pl.DataFrame({"t": texts.fill_null("")})
    return frame.select(
        n_words=words.list.len(),
        mean_word_length=words.list.eval(pl.element().str.len_chars()).list.mean().fill_null(0.0),
        symbol_word_ratio=(text.str.count_matches(r"#|\.\.\.|…") / words.list.len().clip(lower_bound=1)).cast(
            pl.Float64
        ),
        bullet_line_fraction=line_share(_BULLET),
        ellipsis_line_fraction=line_share(_ELLIPSIS),
        alpha_word_fraction=words.list.eval(pl.element().str.contains(r"\p{L}").cast(pl.Float64))
        .list.mean()
        .fill_null(0.0),
        stop_words=stop_hits,
        duplicate_line_fraction=pl.when(n_lines > 0)
        .then(1.0 - lines.list.n_unique() / n_lines)
        .otherwise(0.0),
        terminal_punct_line_fraction=line_share(_TERMINAL),
        non_alpha_char_fraction=pl.when(non_space > 0)
        .then(1.0 - text.str.count_matches(r"\p{L}") / non_space)
        .otherwise(1.0),
        has_curly_brace=text.str.contains(r"\{"),
    )


def heuristic_checks(features: pl.DataFrame, th: HeuristicThresholds) -> pl.DataFrame:
    """One boolean column per check (True = pass)."""
    c = pl.col
    return features.select(
        words_in_range=c("n_words").is_between(th.min_words, th.max_words),
        word_length_in_range=c("mean_word_length").is_between(
            th.min_mean_word_length, th.max_mean_word_length
        ),
        few_symbols=c("symbol_word_ratio") <= th.max_symbol_word_ratio,
        few_bullets=c("bullet_line_fraction") <= th.max_bullet_line_fraction,
        few_ellipsis=c("ellipsis_line_fraction") <= th.max_ellipsis_line_fraction,
        alphabetic_words=c("alpha_word_fraction") >= th.min_alpha_word_fraction,
        stop_words=c("stop_words") >= th.min_stop_words,
        few_duplicate_lines=c("duplicate_line_fraction") <= th.max_duplicate_line_fraction,
        terminal_punctuation=c("terminal_punct_line_fraction") >= th.min_terminal_punct_line_fraction,
        mostly_letters=c("non_alpha_char_fraction") <= th.max_non_alpha_char_fraction,
        no_curly_braces=~c("has_curly_brace"),
    )


@dataclass(frozen=True)
class HeuristicRater:
    """Share of heuristic checks passed, on the 1–5 scale; `weights` (check name → weight) reweights."""

    thresholds: HeuristicThresholds = HeuristicThresholds()
    weights: tuple[tuple[str, float], ...] = ()
    name: str = "heuristic"

    def rate(self, docs: pl.DataFrame) -> np.ndarray:
        features = heuristic_features(require_text(docs, self.name))
        checks = heuristic_checks(features, self.thresholds)
        weights = dict.fromkeys(checks.columns, 1.0)
        for check, weight in self.weights:
            if check not in weights:
                raise ClimbInputError(
                    f"heuristic weight for unknown check {check!r}; checks: {checks.columns}"
                )
            weights[check] = float(weight)
        total = sum(weights.values())
        if total <= 0:
            raise ClimbInputError(f"heuristic weights {self.weights}: the sum must be positive")
        passed = checks.select(
            pl.sum_horizontal([pl.col(k).cast(pl.Float64) * w for k, w in weights.items()]) / total
        ).to_series()
        scores = MIN_SCORE + (MAX_SCORE - MIN_SCORE) * passed.to_numpy()
        # An empty document passes the "at most" checks vacuously; it is still the worst document.
        return np.where(features.get_column("n_words").to_numpy() == 0, MIN_SCORE, scores)


def _heuristic_factory(weights: dict[str, float] | None = None, **thresholds: float) -> HeuristicRater:
    return HeuristicRater(HeuristicThresholds(**thresholds), tuple((weights or {}).items()))


register_rater("heuristic", _heuristic_factory)

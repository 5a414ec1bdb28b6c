"""Quality raters (heuristic, fastText, custom) and pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.base import RaterSpec, build_rater, rate_documents
from climb_dagster.core.quality.fasttext_rater import FastTextRater
from climb_dagster.core.quality.heuristics import HeuristicRater, HeuristicThresholds, heuristic_features
from climb_dagster.core.quality.pruning import PruneConfig, cluster_quality, prune_clusters
from climb_dagster.core.quality.train import MIN_THREADS, train_supervised

GOOD = (
    "The committee met on Tuesday to discuss the budget of the new library. Members agreed that the "
    "building should have larger reading rooms, and that the city would pay for half of the cost.\n"
    "After a long debate, they voted to begin construction in the spring. The architect presented "
    "three designs, and the council chose the one with a garden on the roof.\n"
    "Work on the foundations is expected to take four months, weather permitting, and the opening is "
    "planned for the following autumn with a public celebration in the square.\n"
)
SPAM = "### BUY NOW ### ... click ... {win} $$$ !!! ###\n" * 10
LIST = "\n".join(f"- item {i} ..." for i in range(40))


def docs(*texts: str | None) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": [str(i) for i in range(len(texts))], "text": list(texts)},
        schema={"id": pl.String, "text": pl.String},
    )


def test_heuristic_features_are_per_document() -> None:
    f = heuristic_features(pl.Series(["one two three\none two three", "", None]))
    assert f.height == 3
    assert f["n_words"].to_list() == [6, 0, 0]
    assert f["duplicate_line_fraction"][0] == pytest.approx(0.5)
    assert f["stop_words"][0] == 0


def test_heuristic_scores_order_good_above_junk() -> None:
    scores = rate_documents(HeuristicRater(), docs(GOOD, SPAM, LIST, "", None))
    assert scores.shape == (5,) and scores.min() >= 1.0 and scores.max() <= 5.0
    assert scores[0] == 5.0
    assert scores[0] > scores[1] and scores[0] > scores[2]
    assert scores[3] == 1.0 and scores[4] == 1.0


def test_heuristic_thresholds_and_weights_are_configurable() -> None:
    strict = HeuristicRater(HeuristicThresholds(min_words=10_000))
    assert rate_documents(strict, docs(GOOD))[0] < 5.0
    with pytest.raises(ClimbInputError, match="nope"):
        HeuristicRater(weights=(("nope", 1.0),)).rate(docs(GOOD))
    with pytest.raises(ClimbInputError, match="min_words=5 > max_words=1"):
        HeuristicThresholds(min_words=5, max_words=1)


def test_build_rater_by_name_and_import_path() -> None:
    r = build_rater([RaterSpec("heuristic", {"min_words": 1})])
    assert isinstance(r, HeuristicRater) and r.thresholds.min_words == 1
    custom = build_rater([RaterSpec(f"{__name__}:ConstantRater", {"value": 2.0})])
    assert rate_documents(custom, docs(GOOD)).tolist() == [2.0]
    mixed = build_rater(
        [RaterSpec("heuristic"), RaterSpec(f"{__name__}:ConstantRater", {"value": 1.0}, weight=3.0)]
    )
    assert rate_documents(mixed, docs(GOOD))[0] == pytest.approx((5.0 + 3 * 1.0) / 4)
    with pytest.raises(ClimbInputError, match="'unknown'"):
        build_rater([RaterSpec("unknown")])
    with pytest.raises(ClimbInputError, match="bad options"):
        build_rater([RaterSpec("heuristic", {"colour": 1})])


def test_out_of_scale_scores_are_refused() -> None:
    with pytest.raises(ClimbInputError, match="7.0 at row 0"):
        rate_documents(ConstantRater(7.0), docs(GOOD))


def test_missing_text_column_is_named() -> None:
    with pytest.raises(ClimbInputError, match="'text'"):
        HeuristicRater().rate(pl.DataFrame({"body": ["x"]}))


class ConstantRater:
    name = "constant"

    def __init__(self, value: float) -> None:
        self.value = value

    def rate(self, docs: pl.DataFrame) -> np.ndarray:
        return np.full(docs.height, self.value)


def _train_fasttext(tmp_path: Path, labels: tuple[str, str]) -> str:
    good_words = "library committee budget construction reading debate city spring vote members".split()
    bad_words = "buy now click win free cash prize deal offer cheap".split()
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(200):
        lines.append(f"__label__{labels[0]} " + " ".join(rng.choice(good_words, 12)))
        lines.append(f"__label__{labels[1]} " + " ".join(rng.choice(bad_words, 12)))
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    model = train_supervised(train, 0, epoch=10, dim=10, minCount=1, thread=MIN_THREADS)
    path = tmp_path / "quality.bin"
    model.save_model(str(path))
    return str(path)


@pytest.mark.parametrize("labels", [("5", "1"), ("high", "low")])
def test_fasttext_rater_gives_expected_score(tmp_path: Path, labels: tuple[str, str]) -> None:
    path = _train_fasttext(tmp_path, labels)
    rater = build_rater([RaterSpec("fasttext", {"model_path": path})])
    assert isinstance(rater, FastTextRater)
    scores = rate_documents(
        rater, docs("the library committee\nvoted on the budget", "buy now cheap cash prize offer")
    )
    assert scores[0] > 4.0 and scores[1] < 2.0


def test_fasttext_rater_label_mapping(tmp_path: Path) -> None:
    path = _train_fasttext(tmp_path, ("keep", "drop"))
    with pytest.raises(ClimbInputError, match="label_scores"):
        FastTextRater(path)
    rater = FastTextRater(path, label_scores={"keep": 4.0, "drop": 2.0})
    assert 2.0 <= rate_documents(rater, docs("library budget"))[0] <= 4.0
    with pytest.raises(ClimbInputError, match="not found"):
        FastTextRater(str(tmp_path / "missing.bin"))


def test_cluster_quality_and_pruning() -> None:
    clusters = np.array([0, 0, 1, 1, 3])
    scores = np.array([4.0, 5.0, 2.0, 2.5, 3.0])
    table = cluster_quality(clusters, scores, n_clusters=4)
    assert table["n_docs"].to_list() == [2, 2, 0, 1]
    assert table["quality_mean"].to_list() == [4.5, 2.25, None, 3.0]
    pruned = prune_clusters(table, PruneConfig(threshold=3.0))
    assert pruned["kept"].to_list() == [True, False, False, True]
    assert prune_clusters(table, PruneConfig(threshold=3.0, min_docs=2))["kept"].to_list() == [
        True,
        False,
        False,
        False,
    ]


def test_pruning_everything_names_threshold_and_best_mean() -> None:
    table = cluster_quality(np.array([0, 1]), np.array([2.0, 2.5]), n_clusters=2)
    with pytest.raises(ClimbInputError, match=r"threshold 3.0 .*best cluster mean quality: 2.5"):
        prune_clusters(table, PruneConfig(threshold=3.0))
    with pytest.raises(ClimbInputError, match="threshold=6"):
        PruneConfig(threshold=6)

"""bench e2e on a tiny corpus: the target split never leaks into search or training, and every strategy
runs at the same proxy budget."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from climb_dagster_tests.unit.embedding.test_encoder import make_tiny_model

# Builds a real lab (embedding, clustering, tokenizer, token store) and trains ~30 tiny proxies: ~1 minute.
pytestmark = pytest.mark.slow


def _args(tmp: Path, *extra: str) -> argparse.Namespace:
    from climb_dagster.bench import e2e

    parser = argparse.ArgumentParser()
    e2e.add_arguments(parser)
    model = tmp / "tiny-bert"
    if not model.exists():
        make_tiny_model(model)
    argv = ["--docs", "200", "--k", "8", "--superclusters", "4", "--proxy", "tiny", "--steps", "6"]
    argv += [
        "--budget",
        "6",
        "--seeds",
        "1",
        "--final-seeds",
        "1",
        "--max-eval-windows",
        "8",
        "--candidates",
        "2000",
    ]
    argv += ["--model-path", str(model), "--precision", "fp32", "--target-domain", "postgres_docs"]
    return parser.parse_args([*argv, *extra])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from climb_dagster.bench import e2e

    tmp = tmp_path_factory.mktemp("e2e")
    args = _args(tmp)
    built, split = e2e.build_lab(args, tmp / "work")
    return {"tmp": tmp, "args": args, "lab": built, "split": split}


def _rows(windows: np.ndarray) -> set[bytes]:
    return {np.ascontiguousarray(w).tobytes() for w in windows}


def test_the_test_split_never_reaches_search_or_training(lab):
    from climb_dagster.core.targets.evaluators import load_eval_windows

    split, built = lab["split"], lab["lab"]
    assert split.val.height and split.test.height
    test_titles, test_ids = set(split.test["title"].to_list()), set(split.test["id"].to_list())
    # No test page (by id or title) is in training or in the validation split the search scores on.
    for frame in (split.train, split.val):
        assert not test_ids & set(frame["id"].to_list())
        assert not test_titles & set(frame["title"].drop_nulls().to_list())
    assert not set(split.val["title"].to_list()) & set(split.train["title"].drop_nulls().to_list())
    test_texts = set(split.test["text"].to_list())
    assert not test_texts & set(split.train["text"].to_list())
    # Token level: no test window is a validation window, and none occurs in the training token store.
    test_w = load_eval_windows(built.test_windows)
    val_w = load_eval_windows(built.val_windows)
    assert test_w.shape[0] > 0 and not _rows(test_w) & _rows(val_w)
    stream = b"".join(np.ascontiguousarray(t).tobytes() for t in built.store.tokens)
    dtype = built.store.tokens[0].dtype
    for w in test_w:
        assert np.ascontiguousarray(w.astype(dtype)).tobytes() not in stream
    # The search's target is the validation windows only.
    assert [e.path for e in built.val.evaluators] == [str(built.val_windows)]


def test_e2e_runs_every_strategy_at_equal_budget(lab):
    from climb_dagster.bench import e2e

    validation = e2e.ValidationLab.of(lab["lab"])
    args = argparse.Namespace(**{**vars(lab["args"]), "compare_final_picks": True, "reeval_top": 2})
    out = e2e.run_e2e(args, lab["lab"], validation)
    s = out["strategies"]
    assert set(s) == {"climb", "random", "regmix"}
    for result in s.values():
        assert result["proxies_per_search"] == [6]
        assert np.isfinite(result["test_mean"]) and np.isfinite(result["val_mean"])
        assert result["test_stderr"] == 0.0 and len(result["final_mixtures"]) == 1
    # climb's three rounds (3, 2, 1 proxies): out-of-fold Spearman once 4 proxies are scored.
    assert len(out["oof_spearman_by_round"]) == 3 and out["oof_spearman_by_round"][0] is None
    # random and RegMix draw the same first round from the same seed: trained once, shared. The
    # re-evaluation trains 2 more proxies (another seed).
    assert validation.trained < 3 * 6 + 2
    picks = out["climb_final_picks"]
    assert set(picks) == {"predicted", "observed", "reeval_top2", "reeval_extra_proxies_per_search"}
    assert all(np.isfinite(picks[p]["test_mean"]) for p in ("predicted", "observed", "reeval_top2"))
    # climb's default final pick is the best observed: the same test score as the strategy's.
    assert picks["observed"]["test_mean"] == s["climb"]["test_mean"]


def test_e2e_runs_doremi_when_selected(lab):
    from climb_dagster.bench import e2e

    validation = e2e.ValidationLab.of(lab["lab"])
    args = argparse.Namespace(**{**vars(lab["args"]), "strategies": "doremi", "compare_final_picks": False})
    out = e2e.run_e2e(args, lab["lab"], validation)
    doremi = out["strategies"]["doremi"]
    # DoReMi trains its reference and DRO proxies; the search's validation target is never used.
    assert doremi["proxies_per_search"] == [2] and validation.trained == 0
    weights = np.asarray(doremi["final_mixtures"][0])
    assert weights.shape == (lab["lab"].n_superclusters,) and abs(weights.sum() - 1) < 1e-3
    assert np.isfinite(doremi["test_mean"]) and np.isfinite(doremi["val_mean"])
    assert out["oof_spearman_by_round"] == []


def test_e2e_cli_prints_the_report(lab, capsys):
    import json

    from climb_dagster.bench.__main__ import main

    histories = lab["tmp"] / "histories.json"
    argv = [f"{a}" for a in ["e2e", *_cli(lab["args"]), "--strategies", "random", "--seeds", "2"]]
    assert main([*argv, "--histories", str(histories), "--workers", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    searches = json.loads(histories.read_text())
    assert [(h["strategy"], h["search_seed"]) for h in searches] == [("random", 0), ("random", 1)]
    assert all(len(h["scores"]) == len(h["mixtures"]) == len(h["rounds"]) == 6 for h in searches)
    assert set(out) >= {"direction", "budget", "seeds", "strategies", "oof_spearman_by_round", "wall_s"}
    assert out["direction"] == "minimize" and out["budget"] == 6 and out["seeds"] == 2
    assert set(out["strategies"]["random"]) >= {"test_mean", "test_stderr", "val_mean"}
    assert out["strategies"]["random"]["proxies_per_search"] == [6, 6]


def _cli(args: argparse.Namespace) -> list[str]:
    keys = [
        "docs",
        "k",
        "superclusters",
        "proxy",
        "steps",
        "budget",
        "final_seeds",
        "max_eval_windows",
        "candidates",
    ]
    keys += ["model_path", "precision", "target_domain"]
    return [x for k in keys for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]


def test_parallel_workers_score_exactly_like_one_process(lab):
    """Two spawned workers train the same proxies as this process does, bit for bit, and a round's new
    mixtures go to the pool in one call."""
    from climb_dagster.bench import e2e
    from climb_dagster.bench.proxy_pool import ProxyPool
    from climb_dagster.core.search.sampling import sample_mixtures

    built = lab["lab"]
    mixtures = sample_mixtures(3, built.n_superclusters, 5)
    serial = e2e.ValidationLab.of(built).evaluator(e2e.PROXY_SEED)(mixtures)
    with ProxyPool(built, workers=2) as pool:
        calls = []
        scores = pool.scores
        pool.scores = lambda jobs: calls.append(len(jobs)) or scores(jobs)
        parallel = e2e.ValidationLab.of(built, pool)
        got = parallel.evaluator(e2e.PROXY_SEED)(mixtures)
        # Cached: a second look at the same mixtures trains nothing.
        again = parallel.evaluator(e2e.PROXY_SEED)(mixtures[:2])
    assert calls == [3] and parallel.trained == 3
    np.testing.assert_array_equal(got, serial)
    np.testing.assert_array_equal(again, serial[:2])

"""bench reuse (issue 24) on its quick protocol: both updates are searched from scratch and with reuse at at most
half the new proxies, reused rows carry the previous search's validation scores (never a test score), and the
summary states the goal from what it measured."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from climb_dagster_tests.unit.bench.protocol_args import quick_args

# Builds two real labs (embedding, clustering, per-drop token stores) and trains ~70 tiny models: ~30 s.
pytestmark = pytest.mark.slow


def _args(tmp: Path, *extra: str) -> argparse.Namespace:
    from climb_dagster.bench import reuse

    return quick_args(reuse, tmp, *extra)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from climb_dagster.bench import reuse

    tmp = tmp_path_factory.mktemp("reuse")
    args = _args(tmp)
    return {"tmp": tmp, "args": args, "out": reuse.run(args)}


def test_both_updates_are_searched_from_scratch_and_with_reuse(measured):
    out, args = measured["out"], measured["args"]
    summary = out["summary"]["updates"]
    assert set(summary) == {"add_drop", "refit"}
    for s in summary.values():
        assert s["means"]["scratch"]["proxies"] == args.budget
        assert 0 < s["means"]["reuse"]["proxies"] <= args.budget / 2 and s["means"]["reuse"]["reused"] > 0
        assert s["goal"]["at_most_half"] and np.isfinite(s["means"]["reuse"]["transfer_test"])
        lo, hi = s["scratch_transfer_test_95"]
        assert s["goal"]["reuse_within_scratch_interval"] == (s["means"]["reuse"]["transfer_test"] <= hi)
        assert lo <= s["means"]["scratch"]["transfer_test"] <= hi
    facts = {lab["update"]: lab for lab in out["labs"]}
    assert facts["refit"]["freeze"].startswith("not run")
    assert facts["add_drop"]["new_docs"] > facts["add_drop"]["old_docs"]  # the update added a drop
    assert facts["refit"]["map"]["old_tokens"] > 0 and facts["refit"]["new_docs"] == facts["refit"]["old_docs"]
    for cell in out["cells"]:
        for arm in ("scratch", "reuse", "stale"):
            assert {"transfer_test", "proxy_test", "mixture"} <= set(cell["arms"][arm])
        assert cell["arms"]["reuse"]["past_runs"] == args.budget


def test_reused_rows_carry_validation_scores_only(measured):
    """The previous search's proxies are scored on validation only, and those are the scores reused."""
    from climb_dagster.bench.arms import arm_config
    from climb_dagster.bench.e2e import PROXY_SEED
    from climb_dagster.bench.reuse import evidence_table
    from climb_dagster.bench.reuse_lab import build_reuse_labs
    from climb_dagster.bench.runs import LabRuns
    from climb_dagster.core.reuse.rows import reuse_rows
    from climb_dagster.core.search.strategies import run_search

    args = measured["args"]
    rl = build_reuse_labs(args, measured["tmp"] / "again", 0)["refit"]
    asked: list[tuple[str, ...]] = []

    class Recording(LabRuns):
        def scores(self, jobs):
            asked.extend(j[3] for j in jobs)
            return super().scores(jobs)

    runs = Recording(rl.old)
    cfg = arm_config("climb", args.budget, (3.0, 2.0, 1.0), args.candidates, 1)
    previous = run_search(cfg, runs.evaluator(PROXY_SEED, "blend"), prior=rl.old.prior, seed=0)
    rows = reuse_rows([("previous", evidence_table(rl.old, previous, PROXY_SEED))], rl.cmap, 1.0)
    assert asked and set(asked) == {("val",)}
    assert len(rows) == previous.scores.size
    np.testing.assert_allclose(np.sort(rows.scores), np.sort(previous.scores))

"""Proxy jobs and outcomes as typed records: the proxy cache's result.json files written before them load,
compare equal and are written back byte for byte; the evaluations table is built from outcomes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from upath import UPath

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.cache import RESULT_FILE, ProxyCache
from climb_dagster.core.proxy.jobs import evaluations_table
from climb_dagster.core.proxy.records import ProxyJob, ProxyOutcome

# A result.json as `_finish` wrote it before the records (2026-12, after loss curves were kept).
WRITTEN = {
    "proxy_key": "3f2a9c",
    "status": "ok",
    "reason": "",
    "score": 6.536792993545532,
    "train_loss": 6.612345,
    "tokens": 98304,
    "steps": 48,
    "wall_s": 15.214,
    "tokens_per_s": 6461.2,
    "n_params": 951168,
    "weights": [0.294, 0.0, 0.0, 0.703, 0.003],
    "started_at": 1764500000.125,
    "ended_at": 1764500016.5,
    "loss_curve": [[3, 8.31], [5, 8.02], [48, 6.61]],
}
# One from before started_at, ended_at and loss_curve were kept (2026-11-26), of a diverged run.
WRITTEN_EARLY_FAILED = {
    "proxy_key": "77aa01",
    "status": "failed",
    "reason": "diverged: non-finite loss nan at step 3",
    "score": None,
    "train_loss": None,
    "tokens": 1024,
    "steps": 4,
    "wall_s": 0.5,
    "tokens_per_s": 2048.0,
    "n_params": 951168,
    "weights": [0.2, 0.2, 0.2, 0.2, 0.2],
}


def _cache_with(tmp_path: Path, key: str, record: dict) -> ProxyCache:
    (tmp_path / key).mkdir(parents=True)
    (tmp_path / key / RESULT_FILE).write_text(json.dumps(record, indent=1, allow_nan=False))
    return ProxyCache(UPath(tmp_path))


@pytest.mark.parametrize("record", [WRITTEN, WRITTEN_EARLY_FAILED], ids=["current", "early-failed"])
def test_result_json_written_before_the_records_loads_and_is_rewritten_identically(
    tmp_path: Path, record: dict
) -> None:
    key = record["proxy_key"]
    cache = _cache_with(tmp_path / "old", key, record)
    outcome = cache.get(key)
    assert outcome is not None and outcome.to_dict() == record
    assert list(outcome.to_dict()) == list(record)  # the same key order: result.json reads the same
    assert outcome.ok == (record["status"] == schema.OK)
    again = ProxyCache(UPath(tmp_path / "new"))
    again.put(key, outcome)
    written = (tmp_path / "old" / key / RESULT_FILE).read_bytes()
    assert (tmp_path / "new" / key / RESULT_FILE).read_bytes() == written


def test_a_rounds_outcome_adds_mixture_id_and_cached() -> None:
    outcome = dataclasses.replace(ProxyOutcome.from_dict(WRITTEN), mixture_id="r1-000", cached=True)
    # What a proxy step returned before the records: the cached record plus the round's two fields.
    assert outcome.to_dict() == {**WRITTEN, "mixture_id": "r1-000", "cached": True}
    assert ProxyOutcome.from_dict(json.loads(json.dumps(outcome.to_dict()))) == outcome
    assert outcome.loss_curve == ((3, 8.31), (5, 8.02), (48, 6.61)) and outcome.weights[3] == 0.703


def test_jobs_round_trip_and_bad_records_name_what_is_wrong() -> None:
    job = ProxyJob("r1-000", "3f2a9c", [0.25, 0.75])
    assert job.to_dict() == {"mixture_id": "r1-000", "proxy_key": "3f2a9c", "weights": [0.25, 0.75]}
    assert ProxyJob.from_dict(job.to_dict()) == job and job.weights == (0.25, 0.75)
    with pytest.raises(ClimbInputError, match="proxy job is missing 'proxy_key'"):
        ProxyJob.from_dict({"mixture_id": "r1-000", "weights": [1.0]})
    with pytest.raises(ClimbInputError, match="proxy outcome is missing 'n_params'"):
        ProxyOutcome.from_dict({k: v for k, v in WRITTEN.items() if k != "n_params"})
    with pytest.raises(ClimbInputError, match="proxy outcome has a bad value.*'many'"):
        ProxyOutcome.from_dict({**WRITTEN, "tokens": "many"})
    with pytest.raises(ClimbInputError, match=r"an object, got \[1\]"):
        ProxyOutcome.from_dict([1])  # type: ignore[arg-type]


def test_evaluations_table_from_outcomes_old_and_new() -> None:
    new = dataclasses.replace(ProxyOutcome.from_dict(WRITTEN), mixture_id="r1-001", cached=False)
    old = dataclasses.replace(ProxyOutcome.from_dict(WRITTEN_EARLY_FAILED), mixture_id="r1-000", cached=True)
    table = evaluations_table([new, old], n_clusters=5)
    assert table[schema.MIXTURE_ID].to_list() == ["r1-000", "r1-001"]
    first, second = table.rows(named=True)
    assert first[schema.STATUS] == schema.FAILED and first[schema.SCORE] is None and first[schema.CACHED]
    assert first[schema.STARTED_AT] is None and first[schema.LOSS_CURVE] is None
    assert second[schema.SCORE] == WRITTEN["score"] and second[schema.TOKENS] == WRITTEN["tokens"]
    assert second[schema.LOSS_CURVE] == [[3.0, 8.31], [5.0, 8.02], [48.0, 6.61]]
    assert [second[f"w_{i:03d}"] for i in range(5)] == WRITTEN["weights"]
    assert evaluations_table([], n_clusters=5).height == 0


def test_a_trained_proxy_is_cached_in_the_format_of_before(tmp_path: Path) -> None:
    from climb_dagster.core.proxy.config import ProxyConfig
    from climb_dagster.core.proxy.jobs import run_proxy_job
    from climb_dagster_tests.unit import proxy_corpus as pc

    cache = ProxyCache(UPath(tmp_path))
    job = ProxyJob("r1-000", "k", [0.5, 0.25, 0.25])
    outcome = run_proxy_job(job, pc.store(), ProxyConfig.tiny(pc.TINY_VOCAB), 0, lambda model: 6.5, cache)
    stored = json.loads((tmp_path / "k" / RESULT_FILE).read_text())
    assert list(stored) == list(WRITTEN)
    assert {k: type(v) for k, v in stored.items()} == {k: type(v) for k, v in WRITTEN.items()}
    assert outcome.to_dict() == {**stored, "mixture_id": "r1-000", "cached": False}
    assert outcome.score == 6.5 and outcome.steps == 30 and (tmp_path / "k" / "model").is_dir()
    reused = run_proxy_job(job, pc.store(), ProxyConfig.tiny(pc.TINY_VOCAB), 0, None, cache)
    assert reused == dataclasses.replace(outcome, cached=True)

"""Faults during a run: nothing finished is lost, and results stay identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from climb_dagster.assets.targets import documents_target
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.experiment.records import ExperimentRecord, TokenStoreRef
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.resources.io_manager import read_value
from climb_dagster.resources.tracking import FINAL_OBSERVED
from climb_dagster_tests.assets.bootstrap_fixture import all_assets, seed_clustered_corpus
from climb_dagster_tests.paths import REPO_ROOT
from climb_dagster_tests.reliability.helpers import (
    CANARY,
    CANARY_ENV,
    experiment_run_config,
    failure_text,
    local_resources,
    materialization_meta,
    materialize_in,
)

# ----------------------------------------------------------------------------------- SIGKILL / resume


def _results(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "proxy_runs").glob("*/result.json")}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_mid_round_then_resume_reuses_finished_proxies(clean_run: dict, tmp_path: Path):
    from climb_dagster.jobs import EXPERIMENT_GROUPS
    from climb_dagster.partitions import experiments

    home = tmp_path / "climb"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    target = seed_clustered_corpus(home)
    spec = {**clean_run["spec"], "target": documents_target(target)}
    root = home / "storage"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "CLIMB_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    log = tmp_path / "child.log"
    with open(log, "wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "climb_dagster_tests.reliability._kill_target", str(home), "tiny",
             json.dumps(spec), "1.5"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while not _results(root):
            assert child.poll() is None, f"child exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no proxy finished in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    finished = _results(root)
    assert finished, "at least one proxy finished before the kill"
    assert not (root / "round_1_proxy_evaluations" / "tiny.parquet").exists(), "the round was unfinished"
    assert not list(root.rglob(".*.tmp-*")), "no temporary object is left as if it were complete"

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        killed = [
            r
            for r in instance.get_runs()
            if r.status == dg.DagsterRunStatus.STARTED and r.tags.get("dagster/partition") == "tiny"
        ]
        assert len(killed) == 1, "the killed run stays STARTED in the instance"
        instance.report_run_failed(killed[0])
        assert instance.get_run_by_id(killed[0].run_id).status == dg.DagsterRunStatus.FAILURE

        # Resume: materialize the experiment again on the same instance and storage.
        instance.add_dynamic_partitions(experiments.name, ["tiny"])
        again = dg.materialize(
            all_assets(),
            selection=dg.AssetSelection.groups(*EXPERIMENT_GROUPS),
            partition_key="tiny",
            instance=instance,
            resources=local_resources(home),
            run_config=experiment_run_config(spec),
        )
        assert again.success
    finally:
        instance.dispose()

    round_1 = read_value(root / "round_1_proxy_evaluations" / "tiny")
    reused = set(round_1.filter(round_1["cached"])["proxy_key"].to_list())
    assert reused == finished & set(round_1["proxy_key"].to_list()), "finished proxies were reused"
    assert 0 < len(reused) < round_1.height, "some proxies were reused and the rest trained now"
    meta = materialization_meta(again, "round_1_proxy_evaluations")
    assert meta["reused_from_cache"] == len(reused)

    # Same seeds, same data: the final mixture equals the uninterrupted run's, exactly.
    reference = read_value(clean_run["root"] / "final_mixture" / "base")
    resumed = read_value(root / "final_mixture" / "tiny")
    assert resumed.weights == reference.weights
    assert resumed.best_observed_score == reference.best_observed_score
    for k in (1, 2, 3):
        a = read_value(root / f"round_{k}_proxy_evaluations" / "tiny")["score"].to_list()
        b = read_value(clean_run["root"] / f"round_{k}_proxy_evaluations" / "base")["score"].to_list()
        assert a == b, f"round {k} scores differ after the resume"


# --------------------------------------------------------------------------- MLflow down, then replay


@pytest.mark.slow
def test_mlflow_down_results_stored_then_replayed(
    clean_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    result = clean_run["result"]
    for asset in (
        "experiment",
        "round_1_predictor",
        "round_2_predictor",
        "round_3_predictor",
        "final_mixture",
    ):
        assert materialization_meta(result, asset)["mlflow"] == "pending replay", asset
    logs = clean_run["instance"].all_logs(result.run_id)
    pending = [e.user_message for e in logs if "python -m climb_dagster.replay" in e.user_message]
    assert len(pending) >= 5 and all("127.0.0.1:9" in m for m in pending)
    root = clean_run["root"]
    final = read_value(root / "final_mixture" / "base")
    assert len(final.weights) == 4, "results are stored although MLflow was down"

    from mlflow.tracking import MlflowClient

    from climb_dagster import replay

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("CLIMB_HOME", str(clean_run["home"]))
    monkeypatch.delenv("CLIMB_DEPLOYMENT", raising=False)
    for key, value in CANARY_ENV.items():  # secrets in the environment must not reach MLflow
        monkeypatch.setenv(key, value)
    assert replay.main(["--experiment", "base", "--tracking-uri", uri]) == 0
    assert replay.main(["--experiment", "base", "--tracking-uri", uri]) == 0  # idempotent

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("climb")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    by_kind: dict[str, list] = {}
    for run in runs:
        by_kind.setdefault(run.data.tags["climb.kind"], []).append(run)
    (parent,) = by_kind["experiment"]
    assert parent.info.status == "FINISHED" and parent.data.params["seed"] == "0"
    rounds = by_kind["round"]
    assert sorted(r.data.tags["climb.round"] for r in rounds) == ["1", "2", "3"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in rounds)
    round_ids = {r.info.run_id for r in rounds}
    proxies = by_kind["proxy"]
    assert len(proxies) == 8 and all(p.data.tags["mlflow.parentRunId"] in round_ids for p in proxies)
    scores = sorted(p.data.metrics["target_score"] for p in proxies)
    stored = sorted(
        s for k in (1, 2, 3) for s in read_value(root / f"round_{k}_proxy_evaluations" / "base")["score"]
    )
    assert np.allclose(scores, stored)
    assert parent.data.metrics[FINAL_OBSERVED] == final.best_observed_score
    # One logged predictor per round although replayed twice, its artifacts under the home.
    models = client.search_logged_models([exp.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(round_ids)
    assert exp.artifact_location == (Path(clean_run["home"]) / "mlflow-artifacts" / "climb").as_uri()
    logged = [json.dumps([r.data.params, r.data.tags, r.info.run_name]) for r in runs]
    assert not any(CANARY in text for text in logged), "a credential reached MLflow params/tags"


# ------------------------------------------------------------------------------------ diverged proxy


def test_diverged_proxy_recorded_failed_and_excluded(tiny_corpus: dict, monkeypatch: pytest.MonkeyPatch):
    """One proxy of round 1 trains with lr=1e4: it diverges, is stored as failed with its reason, the round
    goes on, and the predictor fits on the other proxies only."""
    import climb_dagster.core.proxy.train as train

    real = train.train_proxy
    calls = []

    def absurd_lr_for_first(store, mixture, config, seed, *args, **kwargs):
        if not calls:
            config = replace(config, train=replace(config.train, lr=1e4))
        calls.append(list(mixture))
        return real(store, mixture, config, seed, *args, **kwargs)

    monkeypatch.setattr(train, "train_proxy", absurd_lr_for_first)
    spec = {**tiny_corpus["spec"], "seed": 7}  # other mixtures than `base`: nothing comes from the cache
    result = materialize_in(
        tiny_corpus, ["experiment", "round_1_mixtures", "round_1_proxy_evaluations", "round_1_predictor"],
        "diverge", spec,
    )  # fmt: skip
    assert result.success, failure_text(result)
    assert len(calls) == 4
    evals = read_value(tiny_corpus["root"] / "round_1_proxy_evaluations" / "diverge")
    failed = evals.filter(evals["status"] != "ok")
    assert failed.height == 1
    row = failed.row(0, named=True)
    assert row["reason"].startswith("diverged:") and row["score"] is None
    assert materialization_meta(result, "round_1_proxy_evaluations")["failed"] == 1
    meta = materialization_meta(result, "round_1_predictor")
    assert meta["n_successful"] == 3 and meta["n_spent"] == 4
    # The failed run is cached as failed: a re-execution does not train it again.
    cached = json.loads((tiny_corpus["root"] / "proxy_runs" / row["proxy_key"] / "result.json").read_text())
    assert cached["status"] == "failed" and cached["reason"] == row["reason"]
    logs = tiny_corpus["instance"].all_logs(result.run_id)
    assert any("failed and is excluded" in e.user_message for e in logs)


def test_history_refuses_a_non_finite_score_marked_ok():
    import polars as pl

    from climb_dagster.core.search import history as search_history

    table = pl.DataFrame(
        {"mixture_id": ["r1-000"], "status": ["ok"], "score": [float("nan")], "w_000": [1.0]}
    )
    with pytest.raises(ClimbInputError, match="non-finite score"):
        search_history.history([table])


@pytest.mark.timeout(60)
def test_mlflow_uri_that_accepts_but_never_answers(monkeypatch: pytest.MonkeyPatch):
    """A tracking server that accepts connections and then stays silent: tracking gives up after the
    HTTP timeout and the asset records `pending replay` instead of hanging the run."""
    import socket
    import threading

    from climb_dagster.resources.tracking import MlflowTracker
    from climb_dagster.tracking.experiment_tree import experiment_run, try_track

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    tracker = MlflowTracker(tracking_uri=url, max_attempts=2, backoff_s=0.0)
    config = ExperimentConfig(name="silent", target=TargetConfig(documents_path="t.parquet"))
    store = TokenStoreRef("/s/cluster_tokens/k", "k", 512, (1,), (1,))
    record = ExperimentRecord.prepare(
        config, store, {"direction": "minimize", "evaluators": [], "fingerprint": "f"}
    )
    warned: list[str] = []
    start = time.monotonic()
    try:
        meta = try_track(warned.append, "MLflow parent run", lambda: experiment_run(tracker, record))
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()
    assert meta == {"mlflow": "pending replay"}
    assert time.monotonic() - start < 30
    assert len(warned) == 1 and url in warned[0] and "python -m climb_dagster.replay" in warned[0]

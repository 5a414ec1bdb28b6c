"""System test: MlflowTracker against a real `mlflow server` (experiment -> round -> proxy runs).

Extend it to later stages by logging what the bootstrapping assets log (their tags and metric names) and
asserting on `search_runs` the way the MLflow UI filters them.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import numpy as np
import pytest

from climb_dagster.resources.tracking import (
    EXPERIMENT,
    KIND,
    PARENT,
    PROXY,
    ROUND,
    MlflowTracker,
    TrackingUnavailable,
)
from climb_dagster_tests.integration.servers import HOST, MlflowServer

pytestmark = pytest.mark.integration


def _tiny_predictor():
    """A 3-member predictor ensemble on 64 rows (mixture weights -> loss), as a round fits it."""
    from climb_dagster.core.search.predictor import PredictorConfig, fit_predictor

    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=64)
    y = 3.0 - x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.01, size=64)
    return fit_predictor(x, y, "minimize", 0, PredictorConfig(n_models=3)), x


def _mlflow_client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


@pytest.mark.timeout(240)
def test_experiment_round_proxy_hierarchy(mlflow_server: MlflowServer, tmp_path, monkeypatch):
    tracker = MlflowTracker(
        tracking_uri=mlflow_server.url, experiment_name=f"climb-it-{uuid.uuid4().hex[:8]}"
    )
    exp = "exp-a"

    experiment_run = tracker.ensure_run("experiment", {EXPERIMENT: exp}, name=exp)
    # Idempotent: a re-executed step finds the run instead of creating another.
    assert tracker.ensure_run("experiment", {EXPERIMENT: exp}, name=exp) == experiment_run
    round_run = tracker.ensure_run(
        "round", {EXPERIMENT: exp, ROUND: "1"}, name="round-1", parent_run_id=experiment_run
    )
    assert (
        tracker.ensure_run("round", {EXPERIMENT: exp, ROUND: "1"}, "round-1", parent_run_id=experiment_run)
        == round_run
    )
    proxy_runs = {}
    for i in range(3):
        tags = {EXPERIMENT: exp, ROUND: "1", PROXY: f"m{i:03d}"}
        run_id = tracker.ensure_run("proxy", tags, name=f"proxy-m{i:03d}", parent_run_id=round_run)
        tracker.log(
            run_id, params={"mixture_id": f"m{i:03d}", "seed": i}, metrics={"val_loss": 3.0 + 0.1 * i}
        )
        # Re-logging the same params (a retried step) must not fail on MLflow's immutable params.
        tracker.log(
            run_id, params={"mixture_id": f"m{i:03d}", "seed": i}, metrics={"val_loss": 3.0 + 0.1 * i}
        )
        proxy_runs[run_id] = 3.0 + 0.1 * i
    assert len(proxy_runs) == 3

    predictor, x = _tiny_predictor()
    tracker.log(round_run, params={"n_proxies": 3}, metrics={"predictor_spearman": 0.9})
    import pandas as pd

    frame = pd.DataFrame(x, columns=predictor.feature_names)
    model_id = tracker.log_predictor(round_run, str(predictor.save(tmp_path / "predictor")), frame.head(3))
    tracker.log_artifact_bytes(
        round_run, "mixtures.json", json.dumps({"m000": [0.25] * 4}).encode(), "mixtures"
    )
    for run_id in proxy_runs:
        tracker.finish(run_id)
    tracker.finish(round_run)
    tracker.finish(experiment_run)

    # Query as the UI / a notebook would.
    client = _mlflow_client(mlflow_server.url)
    exp_id = tracker.experiment_id()
    proxies = client.search_runs([exp_id], filter_string=f"tags.`{KIND}` = 'proxy'")
    assert {r.info.run_id for r in proxies} == set(proxy_runs)
    for r in proxies:
        assert r.data.tags[PARENT] == round_run
        assert r.data.tags[ROUND] == "1"
        assert r.data.metrics["val_loss"] == pytest.approx(proxy_runs[r.info.run_id])
        assert r.info.status == "FINISHED"
    rounds = client.search_runs([exp_id], filter_string=f"tags.`{KIND}` = 'round'")
    assert [r.info.run_id for r in rounds] == [round_run]
    assert rounds[0].data.tags[PARENT] == experiment_run
    assert rounds[0].data.params["n_proxies"] == "3"
    top = client.search_runs([exp_id], filter_string=f"tags.`{KIND}` = 'experiment'")
    assert [r.info.run_id for r in top] == [experiment_run]
    assert PARENT not in top[0].data.tags
    best = client.search_runs(
        [exp_id], filter_string=f"tags.`{KIND}` = 'proxy'", order_by=["metrics.val_loss ASC"]
    )
    assert best[0].data.metrics["val_loss"] == pytest.approx(3.0)

    # Artifacts went through the server (proxied), and the predictor loads back with the same predictions.
    assert client.get_run(round_run).info.artifact_uri.startswith("mlflow-artifacts:")
    import mlflow
    from mlflow.artifacts import download_artifacts

    assert client.get_logged_model(model_id).source_run_id == round_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)  # not set_tracking_uri: no global state
    reloaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    np.testing.assert_allclose(reloaded.predict(frame), predictor.predict(x), rtol=0, atol=1e-9)
    mixtures = download_artifacts(
        run_id=round_run,
        artifact_path="mixtures/mixtures.json",
        dst_path=str(tmp_path / "m"),
        tracking_uri=mlflow_server.url,
    )
    with open(mixtures) as f:
        assert json.load(f) == {"m000": [0.25] * 4}


@pytest.mark.timeout(60)
def test_unreachable_server_raises_tracking_unavailable_quickly():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    # The port is closed now: connections are refused at once.
    tracker = MlflowTracker(tracking_uri=f"http://{HOST}:{port}", max_attempts=3, backoff_s=0.2)
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=f"127.0.0.1:{port}"):
        tracker.ensure_run("experiment", {EXPERIMENT: "x"}, name="x")
    elapsed = time.monotonic() - start
    assert elapsed < 20, f"TrackingUnavailable took {elapsed:.1f} s"

"""What MLflow holds after a round is tracked, on a real local MLflow store (sqlite) under a temp home:
the whole predictor as one logged model that predicts as the search's own, real proxy run times, loss
curves, tags, the experiment description, stepped metrics on the parent run, artifacts under the home."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common import schema
from climb_dagster.core.common.artifacts import ModelText
from climb_dagster.core.common.code_version import code_version
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.experiment.records import ExperimentRecord, TokenStoreRef
from climb_dagster.core.proxy import jobs as proxy_jobs
from climb_dagster.core.proxy.records import ProxyOutcome
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search.predictor import PredictorConfig, fit_predictor
from climb_dagster.core.search.rounds import fit_table, load_predictor, predictor_summary
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.resources.tracking import CONFIG_HASH, DESCRIPTION, NOTE, TRAIN_LOSS, MlflowTracker
from climb_dagster.tracking.experiment_tree import track_round, try_track

K = 4  # super-clusters


def _record(name: str) -> ExperimentRecord:
    config = ExperimentConfig(name=name, target=TargetConfig(documents_path="t.parquet"))
    store = TokenStoreRef("/s/cluster_tokens/k", "k", 512, (1,), (1,))
    return ExperimentRecord.prepare(
        config, store, {"direction": "minimize", "evaluators": [], "fingerprint": "f"}, config.cost()
    )


def _evaluations(round_number: int, n: int, seed: int, now: float):
    """A round's evaluations as the proxy steps record them: 10 s trainings that ended before `now`."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(K), n)
    records = []
    for i, w in enumerate(weights):
        started = now - 3600 + 60 * i
        records.append(
            ProxyOutcome(
                mixture_id=f"r{round_number}-{i:03d}",
                proxy_key=f"key-{round_number}-{i}",
                status=schema.OK,
                reason="",
                score=float(w @ np.arange(K) + rng.normal(0, 0.05)),
                train_loss=3.0,
                tokens=1000,
                steps=12,
                wall_s=10.0,
                tokens_per_s=100.0,
                n_params=1000,
                cached=False,
                weights=w,
                started_at=started,
                ended_at=started + 10.5,  # training plus scoring
                loss_curve=[[0, 6.0], [5, 4.0 + i / 10], [11, 3.0]],
            )
        )
    return proxy_jobs.evaluations_table(records, K)


def _round(tracker: MlflowTracker, record: ExperimentRecord, evals: list, k: int):
    """What round_k_predictor does: fit on every evaluation so far, then track the round."""
    hm, hs, spent = search_history.history(evals)
    fitted = fit_predictor(hm, hs, "minimize", k, PredictorConfig(n_models=3), cv_folds=4)
    texts, sidecar = fitted.to_strings()
    summary, in_sample = predictor_summary(fitted, hm, hs, spent, record.direction)
    model = ModelText(tuple(texts), {"sidecar": sidecar, **summary})
    fit = fit_table(evals, fitted, in_sample)
    logged = track_round(tracker, record, k, evals[-1], summary, model, {}, fit)
    return logged, model, summary


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory):
    """Two rounds of one experiment tracked into a sqlite store under a temp home, from a temp cwd."""
    root = tmp_path_factory.mktemp("tracking")
    home, cwd = root / "home", root / "cwd"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        tracker = MlflowTracker(
            tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_root=str(home / "mlflow-artifacts")
        )
        record = _record("tracked")
        now = time.time()
        # 20 rows: above min_rows_for_early_stopping, so the members hold out different rows and differ.
        evals = [_evaluations(1, 20, 1, now), _evaluations(2, 4, 2, now)]
        rounds = [_round(tracker, record, evals[:k], k) for k in (1, 2)]
        yield {
            "tracker": tracker,
            "record": record,
            "evals": evals,
            "rounds": rounds,
            "home": home,
            "cwd": cwd,
        }


def _client(tracker: MlflowTracker):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracker.tracking_uri)


def _runs(tracked, kind: str) -> list:
    client = _client(tracked["tracker"])
    return client.search_runs(
        [tracked["tracker"].experiment_id()], f"tags.`climb.kind` = '{kind}'", max_results=100
    )


def test_logged_predictor_loads_through_mlflow_and_predicts_as_the_stored_one(tracked, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked["tracker"].tracking_uri)
    for (logged, model, _), k in zip(tracked["rounds"], (1, 2), strict=True):
        assert logged.model_uri and logged.model_uri.startswith("models:/m-")
        loaded = mlflow.pyfunc.load_model(logged.model_uri)
        # The whole ensemble (3 members), not its first member: the stored predictor the next round loads.
        stored = load_predictor(model)
        assert len(stored.boosters) == 3
        history = search_history.history(tracked["evals"][:k])[0]
        table = tracked["evals"][k - 1].to_pandas()  # a mixtures table, extra columns and all
        got = np.asarray(loaded.predict(table))
        np.testing.assert_allclose(
            got, stored.predict(search_history.table_mixtures(tracked["evals"][k - 1])), atol=1e-9
        )
        frame = table[stored.feature_names].iloc[:0].reindex(range(len(history)))
        frame[stored.feature_names] = history
        np.testing.assert_allclose(np.asarray(loaded.predict(frame)), stored.predict(history), atol=1e-9)
        first_only = stored.boosters[0].predict(history)
        assert not np.allclose(first_only, stored.predict(history)), "members differ, so the mean is tested"
        info = mlflow.models.get_model_info(logged.model_uri)
        assert info.signature.inputs.input_names() == stored.feature_names
        assert info.saved_input_example_info is not None


def test_logged_predictor_is_in_the_models_tab_once_per_round(tracked):
    tracker = tracked["tracker"]
    client = _client(tracker)
    models = client.search_logged_models([tracker.experiment_id()])
    rounds = {r.info.run_id: r for r in _runs(tracked, "round")}
    assert len(models) == 2 and {m.source_run_id for m in models} == set(rounds)
    assert all(
        m.status.to_string() == "READY" if hasattr(m.status, "to_string") else str(m.status) for m in models
    )
    # Tracking the same round again (a re-execution, a replay) finds the model instead of logging another.
    record, evals = tracked["record"], tracked["evals"]
    again, _, _ = _round(tracker, record, evals[:1], 1)
    assert again.model_uri == tracked["rounds"][0][0].model_uri
    assert len(client.search_logged_models([tracker.experiment_id()])) == 2


def test_logged_predictor_carries_its_metrics_and_parameters(tracked):
    """Issue 26: the logged model shows what it is judged by and how it was fit, not an empty page."""
    tracker = tracked["tracker"]
    client = _client(tracker)
    by_run = {m.source_run_id: m for m in client.search_logged_models([tracker.experiment_id()])}
    for k, (logged, _, summary) in enumerate(tracked["rounds"], start=1):
        model = by_run[logged.run_id]
        metrics = {m.key: m.value for m in model.metrics}
        assert metrics["round"] == k and metrics["rows"] == summary["n_successful"]
        assert metrics["oof_spearman"] == pytest.approx(summary["cv_spearman"])
        assert model.params["n_models"] == "3" and model.params["max_depth"] == "4"
        assert model.params["direction"] == "minimize" and model.params["round"] == str(k)


def test_experiment_opens_in_the_training_runs_view(tracked):
    """MLflow 3 opens an experiment without a kind in its GenAI view (traces, 'agent versions')."""
    from climb_dagster.resources.tracking import EXPERIMENT_KIND, TRAINING_KIND

    tracker = tracked["tracker"]
    client = _client(tracker)
    assert client.get_experiment(tracker.experiment_id()).tags[EXPERIMENT_KIND] == TRAINING_KIND
    # An experiment created before (without the tag) gets it the next time the tracker uses it.
    client.delete_experiment_tag(tracker.experiment_id(), EXPERIMENT_KIND)
    again = MlflowTracker(tracking_uri=tracker.tracking_uri, artifact_root=tracker.artifact_root)
    assert client.get_experiment(again.experiment_id()).tags[EXPERIMENT_KIND] == TRAINING_KIND


def test_proxy_runs_carry_real_times_loss_curves_and_tags(tracked):
    client = _client(tracked["tracker"])
    proxies = _runs(tracked, "proxy")
    assert len(proxies) == 24
    rows = {r[schema.PROXY_KEY]: r for e in tracked["evals"] for r in e.iter_rows(named=True)}
    version = code_version()
    for run in proxies:
        row = rows[run.data.tags["climb.proxy"]]
        assert run.info.start_time == int(row[schema.STARTED_AT] * 1000)
        assert run.info.end_time == int(row[schema.ENDED_AT] * 1000)
        assert (run.info.end_time - run.info.start_time) / 1000 >= row[schema.WALL_S]
        history = client.get_metric_history(run.info.run_id, TRAIN_LOSS)
        assert [(m.step, m.value) for m in history] == [(int(s), v) for s, v in row[schema.LOSS_CURVE]]
        assert run.data.tags[CONFIG_HASH] == tracked["record"].config_hash
        assert run.data.tags["climb.code_version"] == version["version"]
        if "git_sha" in version:
            assert run.data.tags["mlflow.source.git.commit"] == version["git_sha"]
    for run in _runs(tracked, "round"):
        k = int(run.data.tags["climb.round"])
        assert run.info.start_time == int(tracked["evals"][k - 1][schema.STARTED_AT].min() * 1000)


def test_experiment_has_a_description_and_keeps_artifacts_under_the_home(tracked):
    tracker, home, cwd = tracked["tracker"], tracked["home"], tracked["cwd"]
    exp = _client(tracker).get_experiment(tracker.experiment_id())
    assert exp.tags[NOTE] == DESCRIPTION
    artifacts = Path(exp.artifact_location.removeprefix("file://"))
    assert artifacts.is_relative_to(home / "mlflow-artifacts")
    stored = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in stored) and any(p.name.endswith("_fit.csv") for p in stored)
    assert not any(cwd.iterdir()), f"tracking wrote into the working directory: {list(cwd.iterdir())}"


def test_parent_run_has_best_so_far_and_oof_spearman_per_round(tracked):
    client = _client(tracked["tracker"])
    (parent,) = _runs(tracked, "experiment")
    best = client.get_metric_history(parent.info.run_id, "best_target_score")
    oof = client.get_metric_history(parent.info.run_id, "oof_spearman")
    summaries = [summary for _, _, summary in tracked["rounds"]]
    assert [(m.step, m.value) for m in best] == [
        (k, s["best_observed_score"]) for k, s in enumerate(summaries, 1)
    ]
    assert [(m.step, m.value) for m in oof] == [(k, s["cv_spearman"]) for k, s in enumerate(summaries, 1)]
    assert best[1].value <= best[0].value, "best so far of a minimized score never rises"


def test_parent_run_has_the_cost_estimate(tracked):
    (parent,) = _runs(tracked, "experiment")
    params = parent.data.params
    cost = tracked["record"].cost
    assert params["cost.params"] == str(cost.params) and params["cost.hours"] == str(cost.hours)
    assert params["cost.peak_bytes_per_step"] == str(cost.peak_bytes_per_step)
    assert params["cost.rounds"] == ":".join(map(str, cost.rounds)) and params["cost.device"] == "cpu"


def test_metadata_links_to_the_run_and_the_model(tracked):
    tracker = tracked["tracker"]
    logged = tracked["rounds"][0][0]
    meta = try_track(lambda message: None, "round", lambda: logged)
    exp_id = tracker.experiment_id()
    training_view = "workflowType=machine_learning"  # MLflow 3.17 opens its GenAI view without it
    assert meta["mlflow"].url == f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{logged.run_id}?{training_view}"
    assert meta["mlflow_model"].text == logged.model_uri
    model_id = logged.model_uri.removeprefix("models:/")
    assert meta["mlflow_model_page"].url.endswith(f"/models/{model_id}?workflowType=machine_learning")
    run_meta = try_track(lambda message: None, "parent", lambda: logged.run_id, tracker)
    assert run_meta["mlflow"].url == logged.run_url


def test_artifact_location_only_for_local_stores(tmp_path):
    local = MlflowTracker(tracking_uri=f"sqlite:///{tmp_path}/m.db", artifact_root=str(tmp_path / "a"))
    assert local.artifact_location() == (tmp_path / "a" / "climb").as_uri()
    server = MlflowTracker(tracking_uri="http://mlflow:5000", artifact_root=str(tmp_path / "a"))
    assert server.artifact_location() is None


def test_predictor_package_files_are_the_import_closure_of_the_predictor() -> None:
    import subprocess
    import sys

    from climb_dagster.resources.tracking import PREDICTOR_PACKAGE_FILES

    code = """
import pathlib, sys
import climb_dagster.core.search.predictor
root = pathlib.Path(sys.modules["climb_dagster"].__file__).parent
names = [n for n in sys.modules if n.split(".")[0] == "climb_dagster"]
print(" ".join(pathlib.Path(sys.modules[n].__file__).relative_to(root).as_posix() for n in names))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert set(done.stdout.split()) == set(PREDICTOR_PACKAGE_FILES)


def test_logged_predictor_loads_where_climb_dagster_is_not_installed(tracked, tmp_path):
    """A notebook or serving host with mlflow and lightgbm only: the model carries the predictor's code."""
    import subprocess
    import sys

    import climb_dagster

    logged, model, _ = tracked["rounds"][1]
    table = tracked["evals"][1]
    table.write_parquet(tmp_path / "table.parquet")
    expected = load_predictor(model).predict(search_history.table_mixtures(table))
    repo = str(Path(climb_dagster.__file__).resolve().parents[1])
    code = f"""
import importlib.util, os, sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in (getattr(f, "__module__", "") or "")]
sys.path = [p for p in sys.path if p not in ("", {repo!r}) and os.path.abspath(p) != {repo!r}]
assert importlib.util.find_spec("climb_dagster") is None, "climb_dagster is still importable"
import mlflow, numpy as np, pandas as pd
os.environ["MLFLOW_TRACKING_URI"] = {tracked["tracker"].tracking_uri!r}
loaded = mlflow.pyfunc.load_model({logged.model_uri!r})
got = loaded.predict(pd.read_parquet({str(tmp_path / "table.parquet")!r}))
import climb_dagster
assert "/code/climb_dagster/" in climb_dagster.__file__, climb_dagster.__file__
print(" ".join(repr(float(x)) for x in np.asarray(got)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose([float(x) for x in done.stdout.split()], expected, atol=1e-9)


def test_logging_a_predictor_prints_no_progress_bars(tmp_path, capfd, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    tracker = MlflowTracker(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts")
    )
    capfd.readouterr()
    logged, _, _ = _round(tracker, _record("quiet"), [_evaluations(1, 20, 1, time.time())], 1)
    assert logged.model_uri
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ, "the switch is restored"

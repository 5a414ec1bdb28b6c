"""Issue 26, in a real browser: the launchpad starts from a valid experiment config, MLflow opens the experiment in
its training-runs view with the nested runs, the logged predictor shows its metrics, strategies compare in one
runs table, and the plots on the asset pages load from the MLflow server.

Two tiny experiments at the same budget (climb and random search) tracked by a real `mlflow server`, a
`dagster-webserver` on the same instance, one headless Chromium for the module."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack

import dagster as dg
import pytest

from climb_dagster.assets.targets import documents_target
from climb_dagster.core.io import storage
from climb_dagster.demo import landing
from climb_dagster.demo.compare import final_test_score, log_test_score
from climb_dagster.deployments import build_resources
from climb_dagster.resources.tracking import EXPERIMENT_KIND, FINAL_TEST, OOF_SPEARMAN, TRAINING_KIND
from climb_dagster_tests.assets.bootstrap_fixture import (
    TINY_EXPERIMENT,
    run_experiment,
    seed_clustered_corpus,
)
from climb_dagster_tests.browser.ui import dagster_webserver, headless_chromium
from climb_dagster_tests.integration.conftest import mlflow_server  # noqa: F401 - the session fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_S = 90
EXPERIMENTS = {"climb": "tiny", "random": "tiny-random"}


@pytest.fixture(scope="module")
def views(tmp_path_factory, mlflow_server):  # noqa: F811 - the imported fixture
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("operator")
    home, dagster_home = base / "climb", base / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("{}\n")
    mp.setenv("CLIMB_HOME", str(home))
    mp.setenv("CLIMB_CACHE_DIR", str(home / "cache"))
    mp.setenv("DAGSTER_HOME", str(dagster_home))
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    for name in ("CLIMB_DEPLOYMENT", "CLIMB_LANDING_URL"):
        mp.delenv(name, raising=False)
    target = seed_clustered_corpus(home)
    shutil.copy(target, landing.test_path(target))  # the test split the comparison scores on
    with dg.DagsterInstance.get() as instance:
        for strategy, name in EXPERIMENTS.items():
            spec = {**TINY_EXPERIMENT, "strategy": strategy, "target": documents_target(str(target))}
            if strategy == "random":
                spec["rounds"] = [sum(TINY_EXPERIMENT["rounds"])]  # the same budget in one round
            assert run_experiment(instance, name, spec).success
    root = storage.make_path(home / "storage")
    tracker = build_resources()["tracker"]
    for name in EXPERIMENTS.values():
        log_test_score(tracker, root, name, final_test_score(root, name, seeds=1), print)
    with ExitStack() as stack:
        url = stack.enter_context(dagster_webserver(dict(os.environ), base / "webserver.log"))
        driver = stack.enter_context(headless_chromium())
        yield {"dagster": url, "mlflow": mlflow_server.url, "driver": driver, "tracker": tracker}
    mp.undo()


def _wait_text(driver, *needles: str) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def seen(d):
        text = d.find_element(By.TAG_NAME, "body").text
        return text if all(n in text for n in needles) else False

    try:
        return WebDriverWait(driver, WAIT_S).until(seen)
    except TimeoutException:
        text = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"{needles} not on {driver.current_url} within {WAIT_S} s; it shows: {text[:1500]!r}") from None


def _skip_dialogs(driver) -> None:
    from selenium.webdriver.common.by import By

    for skip in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        driver.execute_script("arguments[0].click()", skip)


def test_launchpad_starts_from_a_valid_experiment_config(views):
    """The old scaffold named two target kinds and Dagster refused it ('You can only specify a single field')."""
    driver = views["driver"]
    driver.get(f"{views['dagster']}/locations/__repository__@climb_dagster.definitions/jobs/climb_experiment_job/playground")
    text = _wait_text(driver, "documents_loss")
    _skip_dialogs(driver)
    from selenium.webdriver.common.by import By

    editor = " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".CodeMirror, .cm-editor"))
    assert "documents_loss" in editor and "postgres_docs-heldout.parquet" in editor, editor[:500]
    assert "mc_accuracy" not in editor and "combined" not in editor
    assert "single field" not in text


def test_mlflow_opens_the_experiment_in_the_training_view_with_nested_runs_and_compared_strategies(views):
    tracker, driver = views["tracker"], views["driver"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=views["mlflow"])
    experiment = client.get_experiment(tracker.experiment_id())
    assert experiment.tags[EXPERIMENT_KIND] == TRAINING_KIND
    parents = client.search_runs([experiment.experiment_id], "tags.`climb.kind` = 'experiment'")
    assert {p.data.tags["climb.strategy"] for p in parents} == set(EXPERIMENTS)
    assert all(FINAL_TEST in p.data.metrics for p in parents)
    # MLflow 3.17 ignores the kind tag in its UI and opens experiments in the GenAI view unless the link says
    # otherwise: the links the project writes (asset metadata, demo --compare) open the training view's runs table.
    driver.get(tracker.experiment_url())
    text = _wait_text(driver, *EXPERIMENTS.values())
    assert "Token Usage" not in text and "No data available" not in text, text[:800]
    rounds = client.search_runs([experiment.experiment_id], "tags.`climb.kind` = 'round'")
    assert rounds and all(r.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents} for r in rounds)


def test_logged_predictor_page_shows_its_metrics(views):
    tracker, driver = views["tracker"], views["driver"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=views["mlflow"])
    models = client.search_logged_models([tracker.experiment_id()])
    assert models and all(OOF_SPEARMAN in {m.key for m in model.metrics} for model in models)
    driver.get(tracker.model_url(models[0].model_id))
    _wait_text(driver, OOF_SPEARMAN)


def test_the_final_plot_on_the_asset_page_loads_from_the_mlflow_server(views):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = views["driver"]
    driver.get(f"{views['dagster']}/assets/final_mixture?view=partitions&partition=tiny")
    _wait_text(driver, "final_plot")
    _skip_dialogs(driver)
    script = (
        f"const img = [...document.images].find(i => i.src.startsWith({views['mlflow']!r}));"
        "return img && img.complete && img.naturalWidth > 0 ? img.naturalWidth : null;"
    )
    assert WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(script)) > 0

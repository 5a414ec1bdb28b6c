"""What an operator sees in the Dagster UI after a tiny run, checked in a real browser (headless Chromium).

One pipeline run (the bootstrapping tests' tiny corpus) into a fresh DAGSTER_HOME/CLIMB_HOME, one
`dagster-webserver` on that instance, one browser for the module."""

from __future__ import annotations

import os
from contextlib import ExitStack

import dagster as dg
import pytest

from climb_dagster.assets.targets import documents_target
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.io import storage
from climb_dagster.resources.io_manager import read_value
from climb_dagster_tests.assets.bootstrap_fixture import (
    TINY_EXPERIMENT,
    run_experiment,
    seed_clustered_corpus,
)
from climb_dagster_tests.browser.ui import dagster_webserver, headless_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPERIMENT = "tiny"
WAIT_S = 90


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("ui")
    home, dagster_home = base / "climb", base / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("{}\n")  # the default instance (sqlite), said explicitly
    mp.setenv("CLIMB_HOME", str(home))
    mp.setenv("CLIMB_CACHE_DIR", str(home / "cache"))
    mp.setenv("DAGSTER_HOME", str(dagster_home))
    for name in ("CLIMB_DEPLOYMENT", "CLIMB_LANDING_URL", "MLFLOW_TRACKING_URI"):
        mp.delenv(name, raising=False)
    target = seed_clustered_corpus(home)
    # A persistent instance in DAGSTER_HOME: the webserver reads the same run and event storage.
    with dg.DagsterInstance.get() as instance:
        result = run_experiment(
            instance, EXPERIMENT, {**TINY_EXPERIMENT, "target": documents_target(str(target))}
        )
    assert result.success
    labels = supercluster_labels(read_value(storage.make_path(home / "storage") / "super_cluster_stats"), 4)
    with ExitStack() as stack:
        url = stack.enter_context(dagster_webserver(dict(os.environ), base / "webserver.log"))
        driver = stack.enter_context(headless_chromium())
        yield {"url": url, "driver": driver, "labels": labels}
    mp.undo()


def _open_partition(ui, asset: str):
    """The asset's partition page, with its latest materialization's metadata loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = ui["driver"]
    driver.get(f"{ui['url']}/assets/{asset}?view=partitions&partition={EXPERIMENT}")
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.XPATH, "//td[normalize-space()='stored_at']")
    )
    # A first visit shows Dagster's newsletter dialog over the page.
    for skip in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        driver.execute_script("arguments[0].click()", skip)
    return driver


def _metadata_cell(driver, key: str):
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.XPATH, f"//tr[td[1][normalize-space()='{key}']]/td[2]")
    assert cells, f"no metadata entry {key!r} on {driver.current_url}"
    return cells[0]


def _table(cell) -> tuple[list[str], list[list[str]]]:
    from selenium.webdriver.common.by import By

    tables = cell.find_elements(By.TAG_NAME, "table")
    assert tables, f"not rendered as a table: {cell.text[:200]!r}"
    header = [th.text for th in tables[0].find_elements(By.CSS_SELECTOR, "thead th")]
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    return header, [row for row in rows if row]  # the UI's table has a spacer row without cells


def _image_loads(driver, cell) -> dict:
    """Open the metadata entry's dialog and wait for its inline PNG to decode; returns its size."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Markdown longer than 1,000 characters (an inline PNG) opens in a dialog from this link.
    links = cell.find_elements(By.XPATH, ".//a[normalize-space()='[Show Markdown]']")
    if links:
        driver.execute_script("arguments[0].click()", links[0])
    script = (
        "const img = document.querySelector('img[src^=\"data:image/png\"]');"
        "return img && img.complete ? {w: img.naturalWidth, h: img.naturalHeight} : null;"
    )
    return WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(script))


def test_round_mixtures_render_as_a_table_with_named_super_clusters(ui):
    driver = _open_partition(ui, "round_1_mixtures")
    header, rows = _table(_metadata_cell(driver, "mixtures"))
    assert header[:3] == ["mixture_id", "round", "proxy_key"]
    assert header[3:] == ui["labels"]
    assert len(rows) == TINY_EXPERIMENT["rounds"][0]
    assert all(sum(float(v) for v in row[3:]) == pytest.approx(1.0, abs=0.01) for row in rows)
    # The IO manager's suffix-less `path` is gone; the real file is named once.
    assert not driver.find_elements("xpath", "//tr[td[1][normalize-space()='path']]")
    assert _metadata_cell(driver, "stored_at").text.strip().endswith(f"round_1_mixtures/{EXPERIMENT}.parquet")


def test_round_weights_plot_loads(ui):
    driver = _open_partition(ui, "round_1_mixtures")
    size = _image_loads(driver, _metadata_cell(driver, "weights_plot_png"))
    assert size["w"] > 0 and size["h"] > 0


def test_final_mixture_names_super_clusters_and_plots_them_beside_the_natural_mixture(ui):
    driver = _open_partition(ui, "final_mixture")
    header, rows = _table(_metadata_cell(driver, "final_vs_natural"))
    assert header == ["super_cluster", "label", "final", "natural"]
    assert [row[1] for row in rows] == ui["labels"]
    assert all(label.split(" ", 1)[1] for label in ui["labels"]), "every label carries its top terms"
    size = _image_loads(driver, _metadata_cell(driver, "final_plot_png"))
    assert size["w"] > 0 and size["h"] > 0

"""Issue 12, item 7: sensors and schedules have deliberate default states and say what they do."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from climb_dagster_tests.paths import REPO_ROOT

# Cheap or event-driven ones run by default; the expensive refit and the deleting retention wait for an operator.
EXPECTED = {
    "new_drops_sensor": "RUNNING",
    "reassign_sensor": "RUNNING",
    "merge_sensor": "RUNNING",
    "drop_tokens_sensor": "RUNNING",
    "proxy_data_sensor": "RUNNING",
    "recluster_schedule": "STOPPED",
    "storage_retention_schedule": "STOPPED",
}


def test_default_states_and_descriptions(climb_home):
    from climb_dagster.definitions import defs

    automation = [*defs.sensors, *defs.schedules]
    states = {a.name: a.default_status.value for a in automation}
    assert states == EXPECTED
    for a in automation:
        assert a.description and len(a.description.split()) >= 8, f"{a.name}: description {a.description!r}"
        # A stopped one says why it is off, so the UI tells the operator what turning it on means.
        if EXPECTED[a.name] == "STOPPED":
            assert "off by default" in a.description.lower(), a.name


@pytest.mark.slow
def test_cli_toggle_documented_in_readme_works(climb_home):
    """The README's `dagster sensor stop/start` commands change the state stored in the instance."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    dagster = [sys.executable, "-m", "dagster"]

    def run(*args: str) -> str:
        out = subprocess.run(
            [*dagster, *args, "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert "Sensor: new_drops_sensor [RUNNING]" in run("sensor", "list")
    run("sensor", "stop", "new_drops_sensor")
    listing = run("sensor", "list")
    assert "Sensor: new_drops_sensor [STOPPED]" in listing
    assert "Sensor: merge_sensor [RUNNING]" in listing
    run("schedule", "start", "recluster_schedule")
    instance = dg.DagsterInstance.get()
    try:
        states = {s.instigator_name: s.status.value for s in instance.all_instigator_state()}
    finally:
        instance.dispose()
    assert states["new_drops_sensor"] == "STOPPED"
    assert states["recluster_schedule"] == "RUNNING"
    readme = (REPO_ROOT / "README.md").read_text()
    for command in ("dagster sensor start", "dagster sensor stop", "dagster schedule start"):
        assert command in readme

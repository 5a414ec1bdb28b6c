"""The guard that keeps test runs out of the user's stores notices a write (conftest.py applies it to
the whole session), and the session's tracking points into a temp dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from climb_dagster_tests.user_stores import snapshot, user_stores, written


def test_guard_notices_an_mlruns_folder_appearing_in_the_working_directory(tmp_path: Path) -> None:
    stores = user_stores(tmp_path)
    before = snapshot(stores)
    assert written(before, snapshot(stores)) == []
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    assert written(before, snapshot(stores)) == [str(tmp_path / "mlruns")]


def test_session_tracking_and_home_are_temp_dirs() -> None:
    temp = Path(tempfile.gettempdir()).resolve()
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert uri.startswith("sqlite:///")
    assert Path(uri.removeprefix("sqlite:///")).resolve().is_relative_to(temp)
    assert Path(os.environ["CLIMB_HOME"]).resolve().is_relative_to(temp)

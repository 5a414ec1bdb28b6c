"""Shared fixtures. Every test gets its own CLIMB_HOME so nothing touches the developer's .climb/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DEMO_DATA = REPO_ROOT / "climb_dagster" / "demo" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def climb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "climb"
    monkeypatch.setenv("CLIMB_HOME", str(home))
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIMB_DEPLOYMENT", raising=False)
    monkeypatch.delenv("CLIMB_LANDING_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dagster_home = tmp_path / "climb_dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return home

"""The user's stores a test run must leave alone: MLflow's defaults in the working directory (./mlruns,
./mlflow.db) and the checkout's default CLIMB_HOME (.climb). conftest.py snapshots them before the session
and fails the run when a test wrote into them."""

from __future__ import annotations

from pathlib import Path

from climb_dagster_tests.paths import REPO_ROOT


def user_stores(cwd: Path) -> list[Path]:
    return sorted({cwd / "mlruns", cwd / "mlflow.db", REPO_ROOT / "mlruns", REPO_ROOT / ".climb"})


def snapshot(paths: list[Path]) -> dict[str, object]:
    """Per path: None when absent, else its mtime and its direct entries with theirs (cheap: no walk)."""
    state: dict[str, object] = {}
    for path in paths:
        if not path.exists():
            state[str(path)] = None
            continue
        entries = sorted((p.name, p.stat().st_mtime_ns) for p in path.iterdir()) if path.is_dir() else []
        state[str(path)] = (path.stat().st_mtime_ns, entries)
    return state


def written(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """The stores whose snapshot changed."""
    return [path for path in before if before[path] != after.get(path)]

"""Shared fixtures. Every test gets its own CLIMB_HOME so nothing touches the developer's .climb/."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_dagster_tests import signals
from climb_dagster_tests.integration.servers import (
    AWS_ENV_TO_CLEAR,
    BUCKET,
    DUMMY_AWS_ENV,
    HOST,
    REGION,
    S3Endpoint,
    server_failed,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session", autouse=True)
def signal_baseline() -> signals.SignalState:
    """The signal handlers and mask pytest started with (set up first, before any test or fixture ran code)."""
    return signals.snapshot()


@pytest.fixture(autouse=True)
def restore_signal_state(signal_baseline: signals.SignalState) -> Iterator[None]:
    """Every test starts and ends with pytest's own signal state, so no program a later test starts inherits a
    change. Dagster's in-process execution (also in session and module fixtures) sets SIGTERM to SIGINT's
    handler, SIG_IGN when pytest runs as a background job: see climb_dagster_tests/signals.py."""
    signals.restore(signal_baseline)
    yield
    signals.restore(signal_baseline)


@pytest.fixture(scope="session", autouse=True)
def keep_out_of_user_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test runs with CLIMB_HOME and MLFLOW_TRACKING_URI in a temp dir (a developer's own exports
    never receive test runs), and the session fails if anything wrote ./mlruns, ./mlflow.db or the
    checkout's .climb."""
    from climb_dagster_tests.user_stores import snapshot, user_stores, written

    stores = user_stores(Path.cwd())
    before = snapshot(stores)
    home = tmp_path_factory.mktemp("session-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIMB_HOME", str(home / "climb"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        yield
    changed = written(before, snapshot(stores))
    if changed:
        pytest.fail(f"the test run wrote into the user's stores {changed}; tests must use temp dirs")


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


# The real S3 server of the system tests (moto on 127.0.0.1), shared by the integration and reliability tests.
@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for key, value in DUMMY_AWS_ENV.items():
            mp.setenv(key, value)
        for key in AWS_ENV_TO_CLEAR:
            mp.delenv(key, raising=False)
        nowhere = os.path.join(tempfile.gettempdir(), f"climb-no-aws-{uuid.uuid4().hex[:8]}")
        mp.setenv("AWS_CONFIG_FILE", nowhere)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)

        # moto serves through werkzeug in this process: one INFO log line per request would be captured by
        # pytest for every test (thousands for a pipeline run) and bury the failure output.
        import logging

        mp.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)
        server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
        try:
            server.start()
        except Exception as exc:  # noqa: BLE001 - any start failure is reported with its cause
            server_failed(f"moto S3 server did not start on {HOST}: {exc!r}")
        try:
            host, port = server.get_host_and_port()
            endpoint = S3Endpoint(url=f"http://{host}:{port}", bucket=BUCKET, region=REGION)
            endpoint.client().create_bucket(Bucket=BUCKET)
            yield endpoint
        finally:
            server.stop()

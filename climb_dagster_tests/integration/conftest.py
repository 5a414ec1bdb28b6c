"""Fixtures of the system tests: real MLflow and PostgreSQL servers (servers.py holds what they start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_dagster_tests import signals
from climb_dagster_tests.integration.servers import (
    HOST,
    IN_CI,
    MlflowServer,
    Postgres,
    _as_postgres_user,
    _mlflow_executable,
    _postgres_from_url,
    _tail,
    find_pg_bindir,
    free_port,
    server_failed,
    stop_process_group,
    wait_until,
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://{HOST}:{port}"
    log_path = root / "server.log"
    cmd = [
        *_mlflow_executable(),
        "server",
        "--host", HOST,
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        # Artifacts go through the server (mlflow-artifacts:/ URIs), as in production where the server
        # fronts MinIO: clients never write the artifact store directly.
        "--serve-artifacts",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    # Job execution (a huey worker pool for GenAI jobs) is not used here and doubles the start time.
    env = {
        **os.environ,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=signals.default_signals,  # stopped by SIGTERM: not pytest's ignored or blocked signals
        )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    return resp.status == 200
            except urllib.error.URLError:
                return False

        def alive() -> str | None:
            if proc.poll() is None:
                return None
            return f"exit code {proc.returncode}; log tail:\n{_tail(log_path)}"

        wait_until(healthy, timeout_s=120, what=f"mlflow server on {url}", alive=alive)
        yield MlflowServer(url=url, root=root, log_path=log_path)
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    external = os.environ.get("CLIMB_TEST_PG_URL")
    if external:
        yield _postgres_from_url(external)
        return

    bindir = find_pg_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL binaries (initdb, pg_ctl) not found: `apt-get install postgresql` "
            "(.ci/run does this), set PG_BINDIR, or point CLIMB_TEST_PG_URL at a server"
        )
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)

    if os.geteuid() == 0:
        import pwd

        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            server_failed("running as root and there is no `postgres` user to run PostgreSQL as")

    # Not under pytest's tmp dir: that is private to root (0700) and the postgres user must enter it.
    root = Path(tempfile.mkdtemp(prefix="climb-pg-"))
    data = root / "data"
    log_path = root / "postgres.log"
    password = "climb-test-" + uuid.uuid4().hex[:12]  # a throwaway cluster's password, not a secret
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        for path in (root, pwfile):
            os.chown(path, pg_user.pw_uid, pg_user.pw_gid)
    pg = Postgres(host=HOST, port=0, user="climb", password=password)
    started = False
    try:
        initdb = subprocess.run(
            _as_postgres_user([
                str(bindir / "initdb"), "-D", str(data), "-U", pg.user, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
            ]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if initdb.returncode != 0:
            server_failed(
                f"initdb failed ({initdb.returncode}): {initdb.stdout[-1500:]}{initdb.stderr[-1500:]}"
            )

        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding: retry
            port = free_port()
            options = (
                f"-k {root} -h {HOST} -p {port} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            start = subprocess.run(
                _as_postgres_user([
                    str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log_path), "-o", options, "-w", "-t", "60", "start",
                ]),
                capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            if start.returncode == 0:
                started = True
                pg = Postgres(host=HOST, port=port, user=pg.user, password=password)
                break
            last_error = f"{start.stdout[-800:]}{start.stderr[-800:]}\nlog tail:\n{_tail(log_path, 1500)}"
        if not started:
            server_failed(f"pg_ctl start failed 3 times: {last_error}")
        yield pg
    finally:
        if started:
            subprocess.run(
                _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"]),
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(postgres_server: Postgres) -> Iterator[str]:
    """A fresh database on the session's server, dropped after the test."""
    name = f"climb_it_{uuid.uuid4().hex[:10]}"
    conn = postgres_server.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    yield name
    conn = postgres_server.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()

"""Real servers for the system tests, started and stopped by session fixtures, all on 127.0.0.1.

- `s3_server`: moto's S3 server (ThreadedMotoServer) with dummy credentials and one bucket.
- `mlflow_server`: `mlflow server` subprocess, sqlite backend, artifacts proxied by the server.
- `postgres_server`: a throwaway PostgreSQL cluster (Debian binaries, initdb + pg_ctl; run as the
  `postgres` user when the tests run as root), or the server in CLIMB_TEST_PG_URL when set.
  `pg_database` gives each test its own database on it.

In CI (env CI set) a server that cannot start fails the test with the reason; elsewhere a missing
PostgreSQL installation skips the PostgreSQL tests with the reason (`apt-get install postgresql`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

IN_CI = bool(os.environ.get("CI"))
HOST = "127.0.0.1"
BUCKET = "climb-it"
REGION = "us-east-1"
# Dummy credentials for moto; never real ones. Config/credential files point nowhere so a developer's
# ~/.aws profile cannot leak into a test, and the instance-metadata lookup is off.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "climb-test-key",
    "AWS_SECRET_ACCESS_KEY": "climb-test-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_failed(message: str) -> None:
    """A server the tests need did not start: fail in CI, and outside CI too (only a missing binary skips)."""
    pytest.fail(message, pytrace=False)


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, alive: Callable[[], str | None]
) -> float:
    """Poll `check` every 0.2 s for at most `timeout_s`. `alive` returns an error text when the server died.

    Returns the seconds waited; fails the test with the reason on timeout or death.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        dead = alive()
        if dead:
            server_failed(f"{what} exited before it was ready: {dead}")
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.2)
    server_failed(f"{what} not ready after {timeout_s:.0f} s: {alive() or 'still starting'}")
    raise AssertionError("unreachable")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group this fixture started (start_new_session=True), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    region: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=self.region)

    def unique_prefix(self, name: str) -> str:
        """A fresh key prefix so tests sharing the bucket never see each other's objects."""
        return f"{name}-{uuid.uuid4().hex[:8]}"


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


# ----------------------------------------------------------------------------------------------- MLflow


@dataclass(frozen=True)
class MlflowServer:
    url: str
    root: Path
    log_path: Path


def _mlflow_executable() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mlflow")
    if found:
        return [found]
    return [sys.executable, "-m", "mlflow"]


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


# ------------------------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    dbname: str = "postgres"

    def dsn(self, dbname: str | None = None) -> str:
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={dbname or self.dbname} connect_timeout=5"
        )

    def connect(self, dbname: str | None = None, autocommit: bool = False):
        import psycopg2

        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = autocommit
        return conn

    def dagster_env(self, dbname: str) -> dict[str, str]:
        """The DAGSTER_PG_* variables that infra/dagster*.yaml read."""
        return {
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": dbname,
        }


def find_pg_bindir() -> Path | None:
    """Directory with initdb/pg_ctl: $PG_BINDIR, Debian's /usr/lib/postgresql/<newest>/bin, or PATH."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    return None


def _postgres_from_url(url: str) -> Postgres:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgresql", "postgres", "postgresql+psycopg2") or not parsed.hostname:
        raise ValueError(f"CLIMB_TEST_PG_URL must look like postgresql://user:pass@host:port/db, got {url!r}")
    return Postgres(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=unquote(parsed.username or "postgres"),
        password=unquote(parsed.password or ""),
        dbname=(parsed.path or "/postgres").lstrip("/") or "postgres",
    )


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` system user (created by the Debian package)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        server_failed("running as root and `runuser` is missing: cannot start PostgreSQL as a non-root user")
    return [runuser, "-u", "postgres", "--", *cmd]


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

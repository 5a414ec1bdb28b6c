"""Real servers for the system tests (all on 127.0.0.1): what the fixtures start and hand out.

The fixtures are in conftest.py (mlflow_server, postgres_server, pg_database) and in the root conftest.py
(s3_server, shared with the reliability tests).

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
import time
import uuid
from collections.abc import Callable
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

"""The Dagster webserver and headless Chromium (Debian's chromium + chromium-driver) for the browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from climb_dagster_tests import signals
from climb_dagster_tests.integration.servers import HOST, _tail, free_port, stop_process_group, wait_until
from climb_dagster_tests.paths import REPO_ROOT

CHROMIUM = Path(os.environ.get("CLIMB_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CLIMB_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
        return response.status == 200


@contextmanager
def dagster_webserver(env: dict[str, str], log: Path) -> Iterator[str]:
    """`dagster-webserver` on a free port for the code location, against the instance in env's DAGSTER_HOME.

    Yields its base URL; the process group is stopped on exit, also when the test fails."""
    port = free_port()
    cmd = [sys.executable, "-m", "dagster_webserver", "-m", "climb_dagster.definitions", "-h", HOST]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "-p", str(port)],
            cwd=REPO_ROOT,
            # This checkout's package first, also where another one is installed in the environment.
            env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the code server it spawns stops with it
            # Not pytest's signal state: a code server copies an inherited SIG_IGN of SIGINT onto SIGTERM.
            preexec_fn=signals.default_signals,
        )
    url = f"http://{HOST}:{port}"
    try:
        wait_until(
            lambda: _ready(url),
            180,
            "dagster-webserver",
            lambda: None if proc.poll() is None else f"exit {proc.returncode}: {_tail(log)}",
        )
        yield url
    finally:
        stop_process_group(proc, grace_s=20)


@contextmanager
def headless_chromium() -> Iterator:
    """A Selenium driver on the system Chromium (no driver download: both paths are given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            raise FileNotFoundError(
                f"{binary} not found: install Debian's chromium and chromium-driver (.ci/run does), or set "
                "CLIMB_TEST_CHROMIUM / CLIMB_TEST_CHROMEDRIVER"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1600,1400")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()

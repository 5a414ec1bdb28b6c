"""The code a result was made with: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

PACKAGE = "climb-dagster"


@functools.cache
def code_version() -> dict[str, str]:
    """{"version": installed package version or "unknown", "git_sha": HEAD (only in a git checkout)}.

    Never fails: a wheel install has no checkout, a container may have no git.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        out = {"version": version(PACKAGE)}
    except PackageNotFoundError:
        out = {"version": "unknown"}
    sha = _git_sha(Path(__file__).resolve().parents[2])
    if sha:
        out["git_sha"] = sha
    return out


def _git_sha(directory: Path) -> str | None:
    """HEAD of the checkout whose root is `directory`; None elsewhere (an installed package may sit
    inside some other repository, whose commit says nothing about this code)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != directory.resolve():
        return None
    return lines[1] if len(lines[1]) == 40 else None

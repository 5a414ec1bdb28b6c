"""This process's memory as Linux reports it in /proc/self/status (the step hook and the cost benchmark read it)."""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")


def proc_status_bytes(field: str) -> int | None:
    """A memory figure of this process (VmRSS, VmHWM, ...) in bytes; None where /proc is not there (macOS)."""
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None

"""Determinism guards: what the code gives today, pinned in a JSON file beside the test and compared part by
part (run the test module as a script to write the file; only for a change meant to alter it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from climb_dagster.core.common.errors import ClimbInputError


def refusal(make: Callable[[], Any]) -> str:
    """The ClimbInputError message `make()` raises, or "accepted"."""
    try:
        make()
    except ClimbInputError as exc:
        return str(exc)
    return "accepted"


def as_json(now: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(now))


def assert_pinned(path: Path, now: dict[str, Any]) -> None:
    pinned, now = json.loads(path.read_text()), as_json(now)
    assert now.keys() == pinned.keys()
    for part in pinned:
        assert now[part] == pinned[part], part


def write_pinned(path: Path, now: dict[str, Any]) -> None:
    path.write_text(json.dumps(as_json(now), indent=1) + "\n")

"""Validation of names that become storage paths (partition keys, experiment names)."""

from __future__ import annotations

import re

from climb_dagster.core.common.errors import ClimbInputError

# Letters, digits, '-', '_', '.', but never a '..' segment: keys are joined onto storage prefixes, so a key
# must not be able to climb out of its asset's folder or smuggle a control character into a log line.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_key(key: str, what: str = "partition key") -> str:
    """Return `key` if it is safe to use as one path segment, else raise ClimbInputError naming it."""
    if not isinstance(key, str):
        raise ClimbInputError(f"{what} must be a string, got {type(key).__name__}: {key!r}")
    if ".." in key or not _KEY.match(key):
        raise ClimbInputError(
            f"invalid {what} {key!r}: use 1-128 characters from [A-Za-z0-9._-], starting with a letter or "
            "digit, without '..', '/' or control characters"
        )
    return key

"""Content hashes: canonical JSON -> sha256, the keys of cached proxy runs, token stores and configs."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(data: Any, length: int = 16) -> str:
    """Hex sha256 of canonical JSON (sorted keys, no whitespace); floats keep their exact repr."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]

"""Content hashes: canonical JSON -> sha256, the keys of cached proxy runs, token stores and configs."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from climb_dagster.core.errors import ClimbInputError

if TYPE_CHECKING:
    from climb_dagster.core.proxy.config import ProxyConfig


def content_hash(data: Any, length: int = 16) -> str:
    """Hex sha256 of canonical JSON (sorted keys, no whitespace); floats keep their exact repr."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def proxy_run_key(mixture: Sequence[float], config: ProxyConfig, seed: int, data_key: str = "") -> str:
    """Key of a proxy run: hash of mixture + config + seed (+ an optional key of the token store)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ClimbInputError(f"seed must be an integer, got {seed!r}")
    weights = [float(w) for w in mixture]
    if not all(math.isfinite(w) for w in weights):
        raise ClimbInputError(f"mixture weights must be finite, got {weights}")
    return content_hash({"mixture": weights, "config": config.run_dict(), "seed": seed, "data": data_key})

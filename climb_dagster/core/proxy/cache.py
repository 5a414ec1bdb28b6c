"""Finished proxy runs on storage, keyed by the content hash of (mixture, config, seed, data)."""

from __future__ import annotations

import json
from typing import Any

from upath import UPath

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.records import ProxyOutcome

RESULT_FILE = "result.json"


class ProxyCache:
    """Finished proxy runs keyed by hash(mixture, config, seed, data): `<root>/<key>/result.json` (+ model/).

    result.json is written last, so its presence means the run (and its model files) is complete.
    """

    def __init__(self, root: UPath, warn: Any = None) -> None:
        self.root = root
        self.warn = warn or (lambda message: None)

    def get(self, key: str) -> ProxyOutcome | None:
        """The cached outcome, or None. A result.json that cannot be read back as an outcome (a corrupted
        copy, a hand edit) is a cache miss, reported with its path: the run is retrained and its record
        replaced atomically, instead of failing every rerun."""
        path = self.root / key / RESULT_FILE
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.warn(f"proxy cache entry {path} is corrupt ({exc}); retraining this proxy and replacing it")
            return None
        try:
            return ProxyOutcome.from_dict(record)
        except ClimbInputError as exc:
            self.warn(f"proxy cache entry {path} is not a proxy result record ({exc}); retraining this proxy")
            return None

    def model_path(self, key: str) -> UPath:
        return self.root / key / "model"

    def put(self, key: str, outcome: ProxyOutcome) -> None:
        storage.atomic_write_text(
            self.root / key / RESULT_FILE, json.dumps(outcome.to_dict(), indent=1, allow_nan=False)
        )

"""Finished proxy runs on storage, keyed by the content hash of (mixture, config, seed, data)."""

from __future__ import annotations

import json
from typing import Any

from upath import UPath

from climb_dagster.core.common import schema
from climb_dagster.core.io import storage

RESULT_FILE = "result.json"


class ProxyCache:
    """Finished proxy runs keyed by hash(mixture, config, seed, data): `<root>/<key>/result.json` (+ model/).

    result.json is written last, so its presence means the run (and its model files) is complete.
    """

    def __init__(self, root: UPath, warn: Any = None) -> None:
        self.root = root
        self.warn = warn or (lambda message: None)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record, or None. A result.json that cannot be read back as a record (a corrupted
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
        if not isinstance(record, dict) or not {schema.STATUS, schema.SCORE} <= record.keys():
            self.warn(f"proxy cache entry {path} is not a proxy result record; retraining this proxy")
            return None
        return record

    def model_path(self, key: str) -> UPath:
        return self.root / key / "model"

    def put(self, key: str, record: dict[str, Any]) -> None:
        storage.atomic_write_text(
            self.root / key / RESULT_FILE, json.dumps(record, indent=1, allow_nan=False)
        )

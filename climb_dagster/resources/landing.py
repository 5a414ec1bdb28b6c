"""Where new crawl drops land: a local folder or an s3:// prefix."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

import dagster as dg
from pydantic import Field
from upath import UPath

from climb_dagster.core.common.keys import validate_key
from climb_dagster.core.io import storage
from climb_dagster.core.io.corpus import find_drop_file
from climb_dagster.core.io.landing import LandedFile, LandingScan, scan_landing


def _mtime(info: dict) -> float:
    for name in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return 0.0


class LandingZone(dg.ConfigurableResource):
    """Drops are files `<base>/<key>.parquet` or `<base>/<key>.jsonl[.gz]`; the file name is the partition key.

    A drop is picked up once its file has not changed for `settle_seconds` (see core/io/landing.py).
    """

    base: str = Field(description="Folder or s3://bucket/prefix where crawl drops land.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto); null: AWS's default."
    )
    s3_region: str | None = Field(default=None, description="S3 region; null: from the environment.")
    settle_seconds: float = Field(
        default=60.0, description="A drop is picked up once its file has not changed for this many seconds."
    )

    def root(self) -> UPath:
        options = storage.s3_storage_options(self.s3_endpoint_url, self.s3_region)
        return storage.make_path(self.base, options, what="landing URL")

    def _listing(self) -> tuple[list[LandedFile], list[str]]:
        """(files, sub-folder names) of the landing location."""
        root = self.root()
        if not root.exists():
            return [], []
        files, folders = [], []
        # One listing with details (one request on S3), not one stat per file.
        for info in root.fs.ls(root.path, detail=True):
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") == "directory":
                folders.append(name)
            else:
                files.append(LandedFile(name, int(info.get("size") or 0), _mtime(info)))
        return files, folders

    def files(self) -> list[LandedFile]:
        return self._listing()[0]

    def scan(self, known_keys: Iterable[str] = (), settle_seconds: float | None = None) -> LandingScan:
        settle = self.settle_seconds if settle_seconds is None else settle_seconds
        files, folders = self._listing()
        scan = scan_landing(files, time.time(), settle, known_keys)
        scan.ignored.extend(
            (f"{name}/", "a folder: drops are files directly in the landing location") for name in folders
        )
        return scan

    def list_drops(self) -> list[str]:
        """Keys of all unambiguous drops present, settled or not, sorted."""
        return sorted(self.scan(settle_seconds=0).ready)

    def path_for(self, key: str) -> UPath:
        return find_drop_file(self.root(), validate_key(key, "crawl drop"))

"""Where new crawl drops land: a local folder or an s3:// prefix."""

from __future__ import annotations

import dagster as dg
from upath import UPath

from climb_dagster.core import storage
from climb_dagster.core.corpus import drop_key_of, find_drop_file
from climb_dagster.core.keys import validate_key


class LandingZone(dg.ConfigurableResource):
    """Drops are files `<base>/<key>.parquet` or `<base>/<key>.jsonl`; the file name is the partition key."""

    base: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    def root(self) -> UPath:
        options = storage.s3_storage_options(self.s3_endpoint_url, self.s3_region)
        return storage.make_path(self.base, options, what="landing URL")

    def list_drops(self) -> list[str]:
        """Keys of all drops present, sorted; files whose names are not valid keys are ignored."""
        root = self.root()
        if not root.exists():
            return []
        keys = set()
        for entry in root.iterdir():
            key = drop_key_of(entry.name)
            if key is None:
                continue
            try:
                keys.add(validate_key(key, "crawl drop"))
            except ValueError:
                continue
        return sorted(keys)

    def path_for(self, key: str) -> UPath:
        return find_drop_file(self.root(), validate_key(key, "crawl drop"))

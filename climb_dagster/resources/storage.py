"""Direct access to the storage root, for artifacts that are folders (token stores, proxy checkpoints)."""

import dagster as dg
from upath import UPath

from climb_dagster.core import storage


class ClimbStorage(dg.ConfigurableResource):
    """Same base path and endpoint as the IO manager; `root() / "proxy_runs"` etc."""

    base_path: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    def options(self) -> dict:
        return storage.s3_storage_options(self.s3_endpoint_url, self.s3_region)

    def root(self) -> UPath:
        return storage.make_path(self.base_path, self.options())

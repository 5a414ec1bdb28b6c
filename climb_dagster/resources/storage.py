"""Direct access to the storage root, for artifacts that are folders (token stores, proxy checkpoints)."""

import dagster as dg
from pydantic import Field
from upath import UPath

from climb_dagster.core.io import storage


class ClimbStorage(dg.ConfigurableResource):
    """Same base path and endpoint as the IO manager; `root() / "proxy_runs"` etc."""

    base_path: str = Field(description="Folder or s3://bucket/prefix: the IO manager's base path.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto); null: AWS's default."
    )
    s3_region: str | None = Field(default=None, description="S3 region; null: from the environment.")

    def options(self) -> dict:
        return storage.s3_storage_options(self.s3_endpoint_url, self.s3_region)

    def root(self) -> UPath:
        return storage.make_path(self.base_path, self.options())

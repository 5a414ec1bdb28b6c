"""What the clustering assets share: their group, the centroid bundle key, partitioned checks."""

import warnings
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster.core.common.artifacts import TensorBundle
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.io_manager import LAZY

GROUP = "clustering"


CENTROIDS = "centroids"


LAZY_IN = {LAZY: True}


def bundle_centroids(bundle: TensorBundle) -> tuple[np.ndarray, str]:
    if CENTROIDS not in bundle.tensors:
        raise ClimbInputError(
            f"cluster_centroids bundle lacks tensor {CENTROIDS!r}; has {list(bundle.tensors)}"
        )
    return np.asarray(bundle.tensors[CENTROIDS], dtype=np.float32), bundle.metadata.get("metric", "cosine")


def check_rows(name: str, n: int, docs: pl.DataFrame, key: str) -> None:
    if n != docs.height:
        raise ClimbInputError(f"drop {key}: {name} has {n} rows but raw_documents has {docs.height}")


def partitioned_check(**kwargs: Any) -> Any:
    # Partitioned asset checks are a Dagster "preview" feature (1.13); it works here (asset test), so
    # keep the warning out of every definitions load.
    def decorate(fn: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=crawl_drops, **kwargs)(fn)

    return decorate

"""The decorator for asset checks on experiment partitions."""

import warnings

import dagster as dg

from climb_dagster.partitions import experiments


def experiment_check(**kwargs) -> object:
    """`dg.asset_check` on the experiments partitions (the docstring becomes the check's description)."""

    # Partitioned asset checks are a Dagster "preview" feature (1.13); keep its warning out of every load.
    def decorate(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=experiments, **kwargs)(fn)

    return decorate

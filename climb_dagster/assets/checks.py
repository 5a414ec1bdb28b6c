"""The decorator for asset checks on experiment partitions, and the result a check gives in a round the
experiment does not use."""

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


def unused_round(check_name: str, k: int, n_rounds: int, asset_key: str | None = None) -> dg.AssetCheckResult:
    """What a round's check reports when the experiment has fewer rounds: a warning that the round is an unused
    pass-through (the asset graph always has MAX_ROUNDS rounds), so the UI shows it apart from a checked round
    instead of green."""
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"round {k} is not used: this experiment has {n_rounds} rounds (a pass-through, nothing checked)",
        metadata={"used": False, "rounds_of_experiment": n_rounds},
    )

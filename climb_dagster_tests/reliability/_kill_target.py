"""Child process of the kill/resume test: materializes one tiny experiment on a persistent instance
(DAGSTER_HOME), each proxy training slowed down so the parent can SIGKILL it mid-round.

Usage: python -m climb_dagster_tests.reliability._kill_target HOME NAME SPEC_JSON DELAY_S
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dagster as dg


def main() -> int:
    home, name, spec, delay = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
    import climb_dagster.core.proxy.train as train
    from climb_dagster.jobs import EXPERIMENT_GROUPS
    from climb_dagster.partitions import experiments
    from climb_dagster_tests.assets.bootstrap_fixture import all_assets, materialize_proxy_data
    from climb_dagster_tests.reliability.helpers import experiment_run_config, local_resources

    real = train.train_proxy

    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        time.sleep(delay)  # the result is unchanged; only the wall time grows
        return result

    train.train_proxy = slow
    instance = dg.DagsterInstance.get()  # DAGSTER_HOME: runs survive this process
    instance.add_dynamic_partitions(experiments.name, [name])
    resources = local_resources(home)
    materialize_proxy_data(instance, resources)
    print("proxy data ready", flush=True)
    result = dg.materialize(
        all_assets(),
        selection=dg.AssetSelection.groups(*EXPERIMENT_GROUPS),
        partition_key=name,
        instance=instance,
        resources=resources,
        run_config=experiment_run_config(spec),
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

"""The demo driver (`make demo`): lay out a landing folder and a target, then run the pipeline stage by
stage through the named jobs of the code location (jobs.py), as the sensors would, so the Dagster UI shows
each run under its job, and print the answer."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import dagster as dg

from climb_dagster.assets.targets import DEMO_TARGET_DOMAIN
from climb_dagster.core.io import storage
from climb_dagster.core.io.settings import Settings
from climb_dagster.core.search.strategies import registered_strategies

DEMO_EXPERIMENT = "demo"
# The demo's 1,400 documents are clustered into K_init 64 and merged into at most this many super-clusters:
# fewer dimensions than proxies, so the round predictors can learn (docs/results-e2e.md).
DEMO_MAX_SUPERCLUSTERS = 10
# 14 proxies, even per round so that two cores train them in pairs: 7 pairs of ~16 s. 10:5:3 (18 proxies,
# 10 pairs, the launchpad's default) took 340 s on a 2-core EPYC without AVX-512 BF16, over the 5-minute goal.
DEMO_ROUNDS = (8, 4, 2)
EXPERIMENT_JOB = "climb_experiment_job"
# The demo prints INFO (one line per proxy) rather than Dagster's DEBUG stream; the UI keeps everything.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    partition_key=None,
    run_config=None,
    asset_selection=None,
) -> None:
    """One in-process run of the named job of the code location, so the UI lists it under that job (a bare
    `materialize` would record it as `__ephemeral_asset_job__`)."""
    result = defs.resolve_job_def(name).execute_in_process(
        run_config={**QUIET, **(run_config or {})},
        instance=instance,
        partition_key=partition_key,
        asset_selection=asset_selection,
        raise_on_error=True,
    )
    assert result.success


def _print_final(final, stats) -> None:  # noqa: ANN001 - FinalMixture, super_cluster_stats frame
    """The final mixture beside the natural one, one line per super-cluster, named by its label."""
    from climb_dagster.core.clustering.superclusters import supercluster_labels

    labels = final.labels or tuple(supercluster_labels(stats, len(final.weights)))
    width = max(len("super-cluster"), *(len(label) for label in labels))
    print(f"{'super-cluster':<{width}}  {'found':>6}  {'natural':>7}")
    for label, w, n in zip(labels, final.weights, final.natural, strict=True):
        print(f"{label:<{width}}  {w:>6.3f}  {n:>7.3f}")


def _print_rounds(root, experiment: str) -> None:
    """Per round: best observed score so far, the median of the round's own proxies, the predictor's
    out-of-fold Spearman, whether the round improved on the best before it."""
    from climb_dagster.core.search.rounds import round_progress
    from climb_dagster.resources.io_manager import read_value

    record = read_value(root / "experiment" / experiment)
    rounds = range(1, record.config.n_rounds + 1)
    summaries = [dict(read_value(root / f"round_{k}_predictor" / experiment).metadata) for k in rounds]
    evaluations = [read_value(root / f"round_{k}_proxy_evaluations" / experiment) for k in rounds]
    print(f"\n[demo] rounds of {experiment!r} ({record.direction}):")
    print(f"{'round':>5}  {'best observed':>13}  {'round median':>12}  {'OOF Spearman':>12}  improved")
    for row in round_progress(summaries, record.direction, evaluations):
        oof = "-" if row["oof_spearman"] is None else f"{row['oof_spearman']:.3f}"
        median = "-" if row["round_median"] is None else f"{row['round_median']:.4f}"
        improved = {None: "-", True: "yes", False: "no"}[row["improved"]]
        print(f"{row['round']:>5}  {row['best_observed']:>13.4f}  {median:>12}  {oof:>12}  {improved}")


def _print_cost(root, experiment: str, seconds: float) -> None:
    """The cost estimate the experiment was admitted with, beside the time its rounds took."""
    from climb_dagster.resources.io_manager import read_value

    cost = read_value(root / "experiment" / experiment).cost
    if cost is not None:
        print(f"\n[demo] cost estimate of {experiment!r}: {cost.summary()}")
        estimated = cost.hours * 3600
        print(f"[demo] estimated {estimated:.0f}s of proxy training; bootstrapping took {seconds:.0f}s")


def experiment_job() -> dg.JobDefinition:
    """The experiment job of the code location, for `reconstructable` (step processes rebuild it by name)."""
    from climb_dagster.definitions import defs

    return defs.resolve_job_def(EXPERIMENT_JOB)


# What every step process needs beyond the definitions: the proxy's transformers model (4.3 s to import on
# a 2-core EPYC), LightGBM (2.5 s), MLflow (2.2 s) and matplotlib's Figure. The forkserver imports them once;
# each step then forks with them loaded instead of importing them again (18 proxy steps, 3 predictors, ...).
STEP_PRELOAD_MODULES = [
    "climb_dagster.definitions",
    "torch",
    "climb_dagster.core.proxy.model",
    "lightgbm",
    "mlflow",
    "matplotlib.figure",
]


def parallel_execution(cores: int) -> dict:
    """Run config that trains up to `cores` proxies at once, each in its own step process.

    Processes rather than threads: proxies are independent, so k processes of one torch thread each scale
    with the cores, while one ~1M-parameter proxy gains far less than 2x from a second thread (its matrices
    are small). The forkserver imports the package, torch and the libraries the steps use once, so a step
    process starts by forking instead of re-importing them.
    """
    return {
        "execution": {
            "config": {
                "max_concurrent": max(1, cores),
                "start_method": {"forkserver": {"preload_modules": STEP_PRELOAD_MODULES}},
            }
        }
    }


def start_step_server() -> None:
    """Start the forkserver that the experiment's step processes fork from now, while the light clustering
    jobs run, rather than when the first step starts (its preload took 13 s on a 2-core EPYC). Dagster's
    multiprocess executor preloads the same list (its own module first) and reuses a running forkserver:
    there is one per process."""
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.set_forkserver_preload(["dagster._core.executor.multiprocess", *STEP_PRELOAD_MODULES])
    forkserver.ensure_running()


def experiment_phases(defs: dg.Definitions, n_rounds: int) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """The experiment job's assets split in two: the experiment and its own rounds (proxies train there, in
    parallel step processes), then the rounds it does not use (empty pass-throughs: the job always has
    MAX_ROUNDS) with the final mixture and export, which need no parallelism and would cost a step process
    each under the multiprocess executor (about 1.5 s to start)."""
    from climb_dagster.assets.experiments import MAX_ROUNDS
    from climb_dagster.jobs import EXPERIMENT_GROUPS

    graph = defs.resolve_asset_graph()

    def groups(names: list[str]) -> list[dg.AssetKey]:
        return sorted(dg.AssetSelection.groups(*names).resolve(graph))

    tail = [f"round_{k}" for k in range(n_rounds + 1, MAX_ROUNDS + 1)] + ["final"]
    return groups([g for g in EXPERIMENT_GROUPS if g not in tail]), groups(tail)


def _run_experiment(
    instance: dg.DagsterInstance, partition_key: str, run_config: dict, cores: int, n_rounds: int
) -> None:
    """The experiment's own rounds under the multiprocess executor, so a round's proxies train in parallel;
    then the unused pass-through rounds, the final mixture and the export in this process."""
    from climb_dagster.definitions import defs

    if Settings.from_env().executor != "multiprocess":
        _run_job(defs, instance, EXPERIMENT_JOB, partition_key, run_config)
        return
    head, tail = experiment_phases(defs, n_rounds)
    with dg.execute_job(
        dg.reconstructable(experiment_job),
        instance=instance,
        tags={"dagster/partition": partition_key},
        run_config={**QUIET, **run_config, **parallel_execution(cores)},
        asset_selection=head,
        raise_on_error=True,
    ) as result:
        assert result.success
    _run_job(defs, instance, EXPERIMENT_JOB, partition_key, asset_selection=tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m climb_dagster.demo")
    parser.add_argument(
        "--docs-per-drop", type=int, default=700, help="seeded subset of each demo drop (0 = all)"
    )
    parser.add_argument("--target-domain", default=DEMO_TARGET_DOMAIN)
    parser.add_argument(
        "--rounds", default=",".join(map(str, DEMO_ROUNDS)), help="proxies per round (default %(default)s)"
    )
    parser.add_argument("--strategy", default="climb", choices=registered_strategies())
    parser.add_argument("--experiment", default=DEMO_EXPERIMENT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-superclusters",
        type=int,
        default=DEMO_MAX_SUPERCLUSTERS,
        help="bound on the merge (default 10: a search of ~20 proxies learns over ~10 dimensions)",
    )
    parser.add_argument(
        "--proxy-steps", type=int, default=None, help="optimizer steps per proxy (default: the experiment's)"
    )
    parser.add_argument(
        "--parallel", type=int, default=os.cpu_count() or 1, help="proxies trained at once (default: cores)"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run random search and RegMix at the same budget (experiments <name>-random, <name>-regmix) "
        "and score every final mixture on the test split; MLflow's runs table compares them",
    )
    parser.add_argument("--test-seeds", type=int, default=2, help="--compare: fresh retrains per final mixture")
    args = parser.parse_args(argv)

    os.environ.setdefault("CLIMB_HOME", os.path.abspath(".climb"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    env = Settings.from_env()
    home = Path(env.home)
    t0 = time.perf_counter()

    from climb_dagster import jobs
    from climb_dagster.assets.targets import documents_target
    from climb_dagster.definitions import defs
    from climb_dagster.demo.landing import prepare_landing, prepare_target, test_path
    from climb_dagster.partitions import crawl_drops, experiments

    target, held = prepare_target(
        home / "targets" / f"{args.target_domain}-heldout.parquet", args.target_domain, 120, args.seed
    )
    landing = Path(env.local_landing())
    written = prepare_landing(landing, args.docs_per_drop or None, seed=args.seed, exclude_titles=held)
    print(
        f"[demo] target: {target} (validation, searched) and {test_path(target)} (test, for bench demo-gain): "
        f"{len(held)} held-out titles of {args.target_domain}, never in training"
    )
    print(f"[demo] landing: {landing} <- {written}")

    from climb_dagster.demo.instance import open_instance

    instance = open_instance()
    keys = sorted(written)
    instance.add_dynamic_partitions(crawl_drops.name, keys)
    stage_t = time.perf_counter()
    # The order the automation follows on a fresh deployment: embed each drop (no centroids yet), fit the
    # centroids, assign and profile each drop, then prune and merge.
    for key in keys:
        _run_job(defs, instance, jobs.drop_embedding_job.name, key)
    if env.executor == "multiprocess":
        start_step_server()
    _run_job(defs, instance, jobs.refit_centroids_job.name)
    for key in keys:
        _run_job(defs, instance, jobs.reassign_drop_job.name, key)
    merge = {"ops": {"super_clusters": {"config": {"max_superclusters": args.max_superclusters}}}}
    _run_job(defs, instance, jobs.merge_job.name, run_config=merge)
    print(f"[demo] clustering done in {time.perf_counter() - stage_t:.0f}s")

    stage_t = time.perf_counter()
    # Proxy data: the tokenizer, each drop tokenized in its own run, then the per-super-cluster index.
    _run_job(defs, instance, jobs.proxy_tokenizer_job.name)
    for key in keys:
        _run_job(defs, instance, jobs.drop_tokens_job.name, key)
    _run_job(defs, instance, jobs.proxy_data_job.name)
    names = {args.strategy: args.experiment}
    if args.compare:
        from climb_dagster.demo.compare import experiment_names

        names = experiment_names(args.experiment, args.strategy)
    instance.add_dynamic_partitions(experiments.name, list(names.values()))
    for strategy, name in names.items():
        spec = {
            "target": documents_target(target),
            "strategy": strategy,
            "rounds": [int(r) for r in args.rounds.split(",")],
            "seed": args.seed,
            "parallel_workers": args.parallel,
        }
        if args.compare:
            # A comparison gives every strategy the same start: none reuses another's proxies.
            spec["reuse"] = False
        if args.proxy_steps is not None:
            spec["proxy_steps"] = args.proxy_steps
        _run_experiment(
            instance, name, {"ops": {"experiment": {"config": spec}}}, args.parallel, len(spec["rounds"])
        )
    bootstrap_s = time.perf_counter() - stage_t
    print(f"[demo] bootstrapping done in {bootstrap_s:.0f}s")

    from climb_dagster.deployments import settings
    from climb_dagster.resources.io_manager import read_value

    root = storage.make_path(settings()["storage"])
    final = read_value(root / "final_mixture" / args.experiment)
    _print_rounds(root, args.experiment)
    _print_cost(root, args.experiment, bootstrap_s)
    print(
        f"\n[demo] final mixture of experiment {args.experiment!r} ({final.strategy}, target: held-out "
        f"{args.target_domain} loss, {final.direction}):"
    )
    _print_final(final, read_value(root / "super_cluster_stats"))
    print(
        json.dumps(
            {
                k: getattr(final, k)
                for k in (
                    "predicted_score",
                    "predicted_natural_score",
                    "best_observed_score",
                    "proxies_trained",
                )
            },
            indent=1,
        )
    )
    if args.compare:
        from climb_dagster.demo.compare import (
            comparison_rows,
            final_test_score,
            log_test_score,
            print_comparison,
        )
        from climb_dagster.deployments import build_resources

        tracker = build_resources()["tracker"]
        test = {s: final_test_score(root, name, args.test_seeds) for s, name in names.items()}
        for s, name in names.items():
            log_test_score(tracker, root, name, test[s], lambda m: print(f"[demo] {m}"))
        print_comparison(
            comparison_rows(root, names, test), str(final.direction), args.test_seeds, tracker.experiment_url()
        )
    print(f"\n[demo] total {time.perf_counter() - t0:.0f}s. Look at it:")
    print(
        "  make ui   -> Dagster http://127.0.0.1:3000 (assets, rounds, metadata plots) and MLflow http://127.0.0.1:5000"
    )
    print(f"  export: {root / 'exports' / args.experiment}/manifest.json")
    return 0

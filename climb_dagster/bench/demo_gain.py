"""Does the found mixture help on documents the search never saw? Train fresh proxies (new seeds) on the
found, the natural (token-share) and the uniform mixture of a finished experiment, and on the mixtures random
search and RegMix find at the experiment's own proxy budget (`--baselines`: any registered strategies), and
score each on the test split. `--doremi` adds DoReMi's mixture (reference + DRO proxy with the experiment's
proxy config and seed; 2 extra proxy trainings, cached), as `--baselines random,regmix,doremi` does.

Run `make demo` first (or any experiment); this reads its stored assets under the deployment's storage. The
demo writes its target's test split beside the validation split the experiment searched
(`<target>-test.parquet`); `--test-documents` names another.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.runs import ValidationLab
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.io import storage
from climb_dagster.core.io.storage import make_path
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.search.strategies import (
    default_strategy,
    registered_strategies,
    run_search,
    strategy_named,
)
from climb_dagster.core.targets.evaluators import build_eval_windows
from climb_dagster.core.targets.prepare import open_token_store, target_evaluator
from climb_dagster.core.targets.spec import TargetSpec

SEED_OFFSET = 10_000  # never one of the search's own seeds
BASELINES = ("random", "regmix")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="demo", help="experiments partition key")
    parser.add_argument("--seeds", type=int, default=3, help="fresh proxy seeds per mixture")
    parser.add_argument(
        "--steps-factor", type=float, default=1.0, help="train the proxies this many times longer"
    )
    parser.add_argument("--test-documents", default=None, help="default: the demo's <target>-test.parquet")
    parser.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help="strategies run at the experiment's budget ('' = none)",
    )
    parser.add_argument("--doremi", action="store_true", help="also score DoReMi's mixture (baseline)")


def run(args: argparse.Namespace) -> dict:
    from climb_dagster.deployments import settings

    s = settings()
    options = storage.s3_storage_options(s["endpoint"], s["region"])
    return demo_gain(storage.make_path(s["storage"], options), options, args)


def demo_gain(root: Any, options: dict | None, args: argparse.Namespace) -> dict:
    from climb_dagster.bench.e2e import PROXY_SEED
    from climb_dagster.core.io.corpus import CorpusConfig, read_drop
    from climb_dagster.core.targets.score import evaluate_target
    from climb_dagster.demo.landing import test_path
    from climb_dagster.resources.io_manager import read_value

    try:
        record = read_value(root / "experiment" / args.experiment)
        final = read_value(root / "final_mixture" / args.experiment)
    except FileNotFoundError as exc:
        raise SystemExit(
            f"no finished experiment {args.experiment!r} under {root}: run `make demo` first ({exc})"
        ) from exc
    test_docs = args.test_documents
    if test_docs is None:
        if not record.config.target.documents_path:
            raise ClimbInputError("the experiment has no documents target; give --test-documents")
        test_docs = str(test_path(Path(record.config.target.documents_path)))
    proxy = record.proxy
    if args.steps_factor != 1.0:
        proxy = proxy.with_token_budget(int(proxy.token_budget * args.steps_factor))
    store = open_token_store(record.token_store_path, options)
    threads = proxy.train.num_threads
    evaluate_val = target_evaluator(record.target_spec, store.load_tokenizer(), threads, options)
    direction = record.direction
    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="climb-demo-gain-") as tmp:
        frame, _ = read_drop(make_path(test_docs, options), "test", CorpusConfig(id_column=None))
        windows = build_eval_windows(
            frame["text"].to_list(),
            store.path,
            Path(tmp) / "test_windows.npy",
            proxy.model.block_size,
            record.config.target.max_eval_windows,
        )
        test = TargetSpec.loss(windows, "test_loss")
        mixtures = {
            "found": np.asarray(final.weights),
            "natural": np.asarray(final.natural),
            "uniform": np.full(len(final.weights), 1.0 / len(final.weights)),
        }
        names = [b.strip() for b in args.baselines.split(",") if b.strip()]
        if args.doremi and "doremi" not in names:
            names.append("doremi")
        unknown = [b for b in names if b not in registered_strategies()]
        if unknown:
            raise ClimbInputError(f"unknown baselines {unknown}; choose from {list(registered_strategies())}")

        def val_score(mixture: np.ndarray, seed: int) -> float:
            result = train_proxy(store, mixture, proxy, seed)
            return float(evaluate_val(result.model)) if result.ok else float("nan")

        searches = ValidationLab(val_score)
        for name in names:
            strategy = strategy_named(name)
            if not strategy.proposes:
                # Its own proxies, cached beside the pipeline's; the answer comes first.
                train = strategy.own_proxies_trainer()
                natural = mixtures["natural"]
                own, _ = train(store, natural, record.proxy, record.seed, root / "proxy_runs", options)
                mixtures[name] = own[0]
                continue
            cfg = default_strategy(name, record.config.budget, str(direction))
            found = run_search(
                cfg, searches.evaluator(PROXY_SEED + record.seed), prior=mixtures["natural"], seed=record.seed
            )
            mixtures[name] = found.final_mixture
        scores: dict[str, list[float]] = {name: [] for name in mixtures}
        val: dict[str, list[float]] = {name: [] for name in mixtures}
        for i in range(args.seeds):
            seed = record.seed + SEED_OFFSET + i
            for name, mixture in mixtures.items():
                result = train_proxy(store, mixture, proxy, seed)
                ok = result.ok
                scores[name].append(
                    float(evaluate_target(result.model, test, num_threads=threads)) if ok else np.nan
                )
                val[name].append(float(evaluate_val(result.model)) if ok else float("nan"))
    mean = {name: float(np.mean(v)) for name, v in scores.items()}
    better = direction.better
    return {
        "direction": str(direction),
        "split": "test",
        "test_documents": test_docs,
        "test": mean,
        "val": {name: float(np.mean(v)) for name, v in val.items()},
        **{f"found_beats_{name}": better(mean["found"], mean[name]) for name in mixtures if name != "found"},
        "per_seed": scores,
        "seeds": args.seeds,
        "experiment": args.experiment,
        "strategy": record.config.strategy,
        "budget": record.config.budget,
        "baseline_proxies_trained": searches.trained,
        "proxy_tokens": proxy.token_budget,
        "seconds": timer.rounded(1),
        "weights": {name: [round(float(w), 4) for w in m] for name, m in mixtures.items()},
    }

"""Does the found mixture help? Train fresh proxies (new seeds) on the found, the natural (token-share) and
the uniform mixture of a finished experiment and score each on the experiment's own target.
`--doremi` adds DoReMi's mixture (reference + DRO proxy with the experiment's proxy config and seed; 2 extra
proxy trainings, cached) as a fourth row.

Run `make demo` first (or any experiment); this reads its stored assets under the deployment's storage.
"""

from __future__ import annotations

import argparse

import numpy as np

from climb_dagster.core.timing import Timer

SEED_OFFSET = 10_000  # never one of the search's own seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="demo", help="experiments partition key")
    parser.add_argument("--seeds", type=int, default=3, help="fresh proxy seeds per mixture")
    parser.add_argument(
        "--steps-factor", type=float, default=1.0, help="train the proxies this many times longer"
    )
    parser.add_argument("--doremi", action="store_true", help="also score DoReMi's mixture (baseline)")


def run(args: argparse.Namespace) -> dict:

    from climb_dagster.core import storage
    from climb_dagster.core.proxy.train import train_proxy
    from climb_dagster.core.target_eval import open_token_store, target_evaluator
    from climb_dagster.resources.io_manager import read_value
    from climb_dagster.resources.sets import settings

    s = settings()
    options = storage.s3_storage_options(s["endpoint"], s["region"])
    root = storage.make_path(s["storage"], options)
    try:
        record = read_value(root / "experiment" / args.experiment)
        final = read_value(root / "final_mixture" / args.experiment)
    except FileNotFoundError as exc:
        raise SystemExit(
            f"no finished experiment {args.experiment!r} under {root}: run `make demo` first ({exc})"
        ) from exc
    proxy = record.proxy
    if args.steps_factor != 1.0:
        proxy = proxy.with_token_budget(int(proxy.token_budget * args.steps_factor))
    store = open_token_store(record.token_store_path, options)
    evaluate = target_evaluator(record.target_spec, store.load_tokenizer(), proxy.train.num_threads, options)
    mixtures = {
        "found": np.asarray(final.weights),
        "natural": np.asarray(final.natural),
        "uniform": np.full(len(final.weights), 1.0 / len(final.weights)),
    }
    timer = Timer()
    if args.doremi:
        from climb_dagster.core.proxy.doremi import doremi_mixture

        found, _ = doremi_mixture(
            store,
            mixtures["natural"],
            record.proxy,
            record.seed,
            root / "proxy_runs",
            storage_options=options,
        )
        mixtures["doremi"] = np.asarray(found.weights)
    scores: dict[str, list[float]] = {name: [] for name in mixtures}
    for i in range(args.seeds):
        seed = record.seed + SEED_OFFSET + i
        for name, mixture in mixtures.items():
            result = train_proxy(store, mixture, proxy, seed)
            scores[name].append(float(evaluate(result.model)) if result.ok else float("nan"))
    direction = record.direction
    mean = {name: float(np.mean(v)) for name, v in scores.items()}
    better = direction.better
    return {
        "direction": str(direction),
        "found": mean["found"],
        "natural": mean["natural"],
        "uniform": mean["uniform"],
        **(
            {"doremi": mean["doremi"], "found_beats_doremi": better(mean["found"], mean["doremi"])}
            if args.doremi
            else {}
        ),
        "found_beats_natural": better(mean["found"], mean["natural"]),
        "found_beats_uniform": better(mean["found"], mean["uniform"]),
        "per_seed": scores,
        "seeds": args.seeds,
        "experiment": args.experiment,
        "strategy": record.config.strategy,
        "proxy_tokens": proxy.token_budget,
        "seconds": timer.rounded(1),
        "weights": {name: [round(float(w), 4) for w in m] for name, m in mixtures.items()},
    }

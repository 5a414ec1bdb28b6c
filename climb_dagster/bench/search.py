"""Offline regret of the search strategies on a pool of mixtures with known scores (e.g. RegMix's).

    python -m climb_dagster.bench search \
        --pool-mixtures train_mixture_1m.csv --pool-scores train_pile_loss_1m.csv \
        --pool-mixtures test_mixture_1m.csv --pool-scores test_pile_loss_1m.csv --budget 56 --seeds 10

Regret of a run = true score of its final mixture minus the pool's best (flipped with --maximize),
averaged over targets x seeds, and per target. `--predictor-spearman` adds the predictor's Spearman on the
RegMix split: fit on the train_* files, score the test_* files.

Honest protocol: `--tune-mixtures/--tune-scores` name a tuning pool and `--tune KEY=V1,V2` a grid of climb
knobs; every grid point runs on the tuning pool (on seeds disjoint from the reported ones), the best mean
regret wins, and only the chosen configuration is reported on the `--pool-*` pool:

    python -m climb_dagster.bench search \
        --tune-mixtures train_mixture_1m.csv --tune-scores train_pile_loss_1m.csv \
        --pool-mixtures test_mixture_1m.csv --pool-scores test_pile_loss_1m.csv \
        --tune final=observed,predicted,trusted --budget 56 --seeds 10 \
        --composite "mean_all=mean(*)" --regmix-climb-predictor

`--composite NAME=mean(COL,...)` / `NAME=mean(*)` / `NAME=W*COL+W*COL` adds a target built from score
columns. `--regmix-climb-predictor` adds `regmix_climb_predictor`: one-shot RegMix with climb's predictor
options (ensemble size, leaf divisor), an ablation separating the predictor from the iterative search.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.pool import MixturePool, PoolLookup, parse_composite, read_pool, regret
from climb_dagster.core.search.predictor import PREDICTOR_KINDS, PredictorConfig, fit_predictor, spearman
from climb_dagster.core.search.strategies import (
    FINAL_PICKS,
    INITIAL_DESIGNS,
    StrategyConfig,
    default_strategy,
    proposing_strategies,
    run_search,
)

# --tune KEY -> (the climb option it sets, its type); ratios are written 4:2:1 inside a grid.
TUNABLE: dict[str, tuple[str, Any]] = {
    "final": ("climb_final", str),
    "models": ("climb_models", int),
    "predictor": ("climb_predictor", str),
    "exploit": ("climb_exploit", float),
    "top-n": ("climb_top_n", float),
    "kappa": ("climb_kappa", float),
    "ratios": ("climb_ratios", lambda v: v.replace(":", ",")),
    "design": ("climb_design", str),
    "leaf-divisor": ("climb_leaf_divisor", int),
    "depth-rows": ("climb_depth_rows", int),
}
# Ablation options of one strategy: option -> (the strategy, the StrategyConfig field it sets; "predictor.x"
# sets the predictor's field x). An option left unset keeps the strategy's default_strategy value.
KNOBS: dict[str, tuple[str, str]] = {
    "climb_final": ("climb", "final"),
    "climb_models": ("climb", "predictor.n_models"),
    "climb_predictor": ("climb", "predictor.kind"),
    "climb_leaf_divisor": ("climb", "predictor.leaf_rows_divisor"),
    "climb_depth_rows": ("climb", "predictor.depth_rows"),
    "climb_design": ("climb", "initial_design"),
    "climb_exploit": ("climb", "exploit_fraction"),
    "climb_top_n": ("climb", "top_n_factor"),
    "climb_kappa": ("climb", "kappa"),
    "climb_ratios": ("climb", "ratios"),
    "regmix_final": ("regmix", "final"),
    "regmix_top_k": ("regmix", "top_k"),
}
REGMIX_CLIMB_PREDICTOR = "regmix_climb_predictor"
# Tuning seeds start here (plus --seed-offset), so tuning and reporting never share a search seed.
TUNE_SEED_SHIFT = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool-mixtures", action="append", required=True, help="mixture CSV (repeatable)")
    parser.add_argument("--pool-scores", action="append", required=True, help="score CSV, paired in order")
    parser.add_argument("--target", action="append", help="score column (repeatable); default: every column")
    parser.add_argument("--budget", type=int, help="evaluations per search run")
    parser.add_argument("--seeds", type=int, default=10, help="runs per target and strategy")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (tune on other seeds)")
    parser.add_argument(
        "--strategies", default="climb,regmix,random", help="registered strategies that propose"
    )
    parser.add_argument("--maximize", action="store_true", help="scores are accuracies (higher is better)")
    parser.add_argument("--predictor-spearman", action="store_true", help="report Spearman on train_/test_")
    parser.add_argument("--composite", action="append", default=[], help="NAME=mean(COL,..)|NAME=W*COL+W*COL")
    parser.add_argument("--tune-mixtures", action="append", default=[], help="tuning pool mixture CSV")
    parser.add_argument("--tune-scores", action="append", default=[], help="tuning pool score CSV")
    parser.add_argument(
        "--tune", action="append", default=[], help=f"climb grid KEY=V1,V2; KEY in {list(TUNABLE)}"
    )
    parser.add_argument(
        "--regmix-climb-predictor", action="store_true", help="also run RegMix with climb's predictor options"
    )
    # Knobs for ablations of climb; defaults are `default_strategy("climb", ...)`.
    parser.add_argument("--climb-final", choices=FINAL_PICKS)
    parser.add_argument("--climb-models", type=int, help="ensemble size of climb's predictor")
    parser.add_argument("--climb-predictor", choices=PREDICTOR_KINDS, help="climb's predictor (gp: one model)")
    parser.add_argument("--climb-exploit", type=float, help="share of a round taken greedily")
    parser.add_argument("--climb-top-n", type=float, help="top-N factor for the next round")
    parser.add_argument("--climb-kappa", type=float, help="optimism in ensemble std")
    parser.add_argument("--climb-ratios", help="round ratios, e.g. 4,2,1")
    parser.add_argument("--climb-design", choices=INITIAL_DESIGNS, help="round-0 design")
    parser.add_argument(
        "--climb-leaf-divisor", type=int, help="tiny-n leaf relaxation (1 = paper's 5 always)"
    )
    parser.add_argument(
        "--climb-depth-rows", type=int, help="rows per level of tree depth (0 = max_depth always)"
    )
    parser.add_argument("--regmix-final", choices=FINAL_PICKS)
    parser.add_argument("--regmix-top-k", type=int)


def _strategy(name: str, budget: int, direction: str, args: argparse.Namespace) -> StrategyConfig:
    if name == REGMIX_CLIMB_PREDICTOR:
        climb = _strategy("climb", budget, direction, args)
        return replace(default_strategy("regmix", budget, direction), predictor=climb.predictor)
    cfg = default_strategy(name, budget, direction)
    ch: dict[str, Any] = {}
    pred: dict[str, Any] = {}
    for option, (strategy, setting) in KNOBS.items():
        value = getattr(args, option, None)
        if strategy != name or value is None:
            continue
        if setting == "ratios":
            value = tuple(float(x) for x in value.split(","))
        if setting.startswith("predictor."):
            pred[setting.removeprefix("predictor.")] = value
        else:
            ch[setting] = value
    if pred.get("kind") == "gp":
        pred.setdefault("n_models", 1)  # a Gaussian process is one model, whatever the strategy's ensemble
    if pred:
        ch["predictor"] = replace(cfg.predictor, **pred)
    return replace(cfg, **ch) if ch else cfg


def _split_spearman(args: argparse.Namespace, direction: str) -> dict[str, Any]:
    pairs = list(zip(args.pool_mixtures, args.pool_scores, strict=True))
    train = [p for p in pairs if Path(p[0]).name.startswith("train_")]
    test = [p for p in pairs if Path(p[0]).name.startswith("test_")]
    if not train or not test:
        raise ClimbInputError("--predictor-spearman needs train_* and test_* mixture files")
    tr = read_pool([p[0] for p in train], [p[1] for p in train])
    te = read_pool([p[0] for p in test], [p[1] for p in test])
    targets = args.target or list(tr.targets)
    out: dict[str, Any] = {"n_train": tr.size, "n_test": te.size}
    configs = (
        ("single", PredictorConfig()),
        ("ensemble8", PredictorConfig(n_models=8)),
        ("gp", PredictorConfig(kind="gp")),
    )
    for label, cfg in configs:
        t0 = time.perf_counter()
        per = {}
        for t in targets:
            p = fit_predictor(tr.mixtures, tr.target_scores(t), direction, seed=0, config=cfg)
            per[t] = round(spearman(p.predict(te.mixtures), te.target_scores(t)), 4)
        out[label] = {
            "per_target": per,
            "mean": round(float(np.mean(list(per.values()))), 4),
            "fit_s": round(time.perf_counter() - t0, 2),
        }
    return out


def _grid(specs: list[str]) -> list[dict[str, Any]]:
    """`["final=a,b", "kappa=0,1"]` -> the 4 settings of the product, as {option: value}."""
    axes: list[list[tuple[str, Any]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or key not in TUNABLE:
            raise ClimbInputError(f"--tune {spec!r}: expected KEY=V1,V2 with KEY in {list(TUNABLE)}")
        option, cast = TUNABLE[key]
        try:
            axes.append([(option, cast(v.strip())) for v in values.split(",") if v.strip()])
        except ValueError:
            raise ClimbInputError(f"--tune {spec!r}: a value is not a {cast.__name__}") from None
    return [dict(point) for point in itertools.product(*axes)] if axes else [{}]


def _load_pool(mixtures: list[str], scores: list[str], composites: list[str]) -> MixturePool:
    pool = read_pool(mixtures, scores)
    for spec in composites:
        pool = pool.with_composite(*parse_composite(spec, pool.targets))
    return pool


def _regrets(
    cfg: StrategyConfig, pool: MixturePool, targets: list[str], seeds: range, direction: str
) -> dict[str, Any]:
    """Regret of the final and of the best observed mixture over targets x seeds, overall and per target."""
    t0 = time.perf_counter()
    final_r, observed_r, per_target = [], [], {}
    for t in targets:
        scores = pool.target_scores(t)
        lookup = PoolLookup(pool.mixtures, scores)
        rs = []
        for s in seeds:
            res = run_search(cfg, lookup, seed=s, candidates=pool.mixtures)
            rs.append(regret(lookup(res.final_mixture[None, :])[0], scores, direction))
            observed_r.append(regret(res.scores[res.best_observed], scores, direction))
        final_r += rs
        per_target[t] = {"mean_regret": round(float(np.mean(rs)), 6), "stderr_regret": _stderr(rs)}
    return {
        "mean_regret": round(float(np.mean(final_r)), 6),
        "median_regret": round(float(np.median(final_r)), 6),
        "mean_best_observed_regret": round(float(np.mean(observed_r)), 6),
        "stderr_regret": _stderr(final_r),
        "per_target": per_target,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _stderr(values: list[float]) -> float:
    return round(float(np.std(values) / np.sqrt(len(values))), 6)


def _tune(
    args: argparse.Namespace, targets: list[str], direction: str, seeds: range
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Run climb's grid on the tuning pool; return the arguments with the winner's options set."""
    if len(args.tune_mixtures) != len(args.tune_scores) or not args.tune_mixtures:
        raise ClimbInputError("--tune-mixtures and --tune-scores must be given in pairs (>= 1)")
    pool = _load_pool(args.tune_mixtures, args.tune_scores, args.composite)
    if args.budget > pool.size:
        raise ClimbInputError(f"budget {args.budget} exceeds the tuning pool size {pool.size}")
    grid = []
    for point in _grid(args.tune):
        trial = argparse.Namespace(**{**vars(args), **point})
        cfg = _strategy("climb", args.budget, direction, trial)
        r = _regrets(cfg, pool, targets, seeds, direction)
        grid.append({"setting": point, "mean_regret": r["mean_regret"], "stderr_regret": r["stderr_regret"]})
    best = min(range(len(grid)), key=lambda i: grid[i]["mean_regret"])
    chosen = grid[best]["setting"]
    report = {"pool": pool.size, "seeds": [seeds.start, seeds.stop - 1], "grid": grid, "chosen": chosen}
    return argparse.Namespace(**{**vars(args), **chosen}), report


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    direction = Direction.MAXIMIZE if args.maximize else Direction.MINIMIZE
    if args.budget is None and not args.predictor_spearman:
        raise ClimbInputError("give --budget (regret of the strategies) and/or --predictor-spearman")
    pool = _load_pool(args.pool_mixtures, args.pool_scores, args.composite)
    targets = args.target or list(pool.targets)
    for t in targets:
        pool.target_scores(t)
    result: dict[str, Any] = {
        "budget": args.budget,
        "seeds": args.seeds,
        "targets": len(targets),
        "pool": pool.size,
    }
    if args.budget is not None:
        names = [s.strip() for s in args.strategies.split(",") if s.strip()]
        for n in names:
            if n not in proposing_strategies():
                raise ClimbInputError(
                    f"strategy {n!r} cannot run on a fixed pool; choose from {proposing_strategies()}"
                )
        if args.regmix_climb_predictor:
            names.append(REGMIX_CLIMB_PREDICTOR)
        if args.budget > pool.size:
            raise ClimbInputError(f"budget {args.budget} exceeds the pool size {pool.size}")
        seeds = range(args.seed_offset, args.seed_offset + args.seeds)
        if args.tune_mixtures or args.tune_scores or args.tune:
            tune_seeds = range(seeds.start + TUNE_SEED_SHIFT, seeds.stop + TUNE_SEED_SHIFT)
            args, result["tuning"] = _tune(args, targets, direction, tune_seeds)
        result["strategies"] = {
            n: _regrets(_strategy(n, args.budget, direction, args), pool, targets, seeds, direction)
            for n in names
        }
    if args.predictor_spearman:
        result["predictor_spearman"] = _split_spearman(args, direction)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result

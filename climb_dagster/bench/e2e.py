"""End to end on real proxies: does the search find a better mixture than random search and RegMix at the
same proxy budget, on documents it never saw?

    python -m climb_dagster.bench e2e --docs 3000 --seeds 3 --compare-final-picks

The demo corpus is sampled, the target domain's held-out pages are split by title into a validation split
(the score every search proxy gets) and a test split (used only to score the final mixtures), and every
held-out title is removed from the training side. The training documents are embedded, clustered, pruned and
merged (core/clustering/stage), tokenized into a per-super-cluster token store, and each strategy runs
`--seeds` searches of `--budget` proxies each. Each search's final mixture is retrained with fresh seeds and
scored on the test split. Prints one JSON object: direction, budget, seeds, per strategy the test mean, its
standard error over search seeds and the validation mean, the out-of-fold predictor Spearman per round of the
`--subject` strategy (climb; mean over seeds), and the wall time. Any registered strategy can be named; one
that trains its own proxies (DoReMi) spends those instead of the search budget.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.cluster import DEMO_DATA
from climb_dagster.bench.lab import Lab, ValidationLab, build_lab
from climb_dagster.bench.proxy_pool import ProxyPool, default_workers
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.storage import atomic_write_text, make_path
from climb_dagster.core.search.predictor import cross_val_spearman, fit_predictor
from climb_dagster.core.search.strategies import (
    SearchStrategy,
    StrategyConfig,
    default_strategy,
    reevaluated_best,
    registered_strategies,
    round_seed,
    run_search,
    select_final,
    strategy_named,
)

# The default comparison: the paper's search against two baselines at the same proxy budget.
STRATEGIES = ("climb", "random", "regmix")
# The strategy whose rounds' predictor and final picks the report breaks down.
SUBJECT = "climb"
# Proxy seeds: a search's proxies share one seed (same initialisation: mixtures differ, not luck); final
# mixtures are retrained with seeds no search used.
PROXY_SEED = 1_000


FRESH_SEED = 20_000


# The second evaluation of the noise-aware final pick uses proxy seeds this far from the search's.
SECOND_SEED = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=str(DEMO_DATA), help="folder with drop-*.parquet")
    parser.add_argument("--docs", type=int, default=3000, help="documents sampled across the demo drops")
    parser.add_argument("--target-domain", default="postgres_docs")
    parser.add_argument("--heldout-fraction", type=float, default=0.3, help="of the target domain, by title")
    parser.add_argument("--budget", type=int, default=24, help="proxies per search, equal for every strategy")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds per strategy")
    parser.add_argument("--final-seeds", type=int, default=2, help="fresh retrains of each final mixture")
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated registered strategies; also: doremi (its own 2 proxies)",
    )
    parser.add_argument(
        "--subject", default=SUBJECT, help="strategy whose predictor and final picks are reported"
    )
    parser.add_argument("--ratios", default="4,2,1", help="per-round budget split of iterative strategies")
    parser.add_argument("--candidates", type=int, default=20_000, help="Dirichlet draws ranked per round")
    parser.add_argument("--k", type=int, default=None, help="K_init (default: default_n_clusters(docs))")
    parser.add_argument(
        "--superclusters",
        type=int,
        default=None,
        help="fixed-count cut (default: MergeConfig's threshold merge)",
    )
    parser.add_argument(
        "--max-superclusters", type=int, default=10, help="bound on the threshold merge's count"
    )
    parser.add_argument("--proxy", choices=["default", "tiny"], default="default")
    parser.add_argument(
        "--steps", type=int, default=None, help="proxy training steps (default: the config's)"
    )
    parser.add_argument("--max-eval-windows", type=int, default=256, help="per split")
    parser.add_argument("--model-path", default=None, help="embedding model (default: the shipped MiniLM)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-windows", type=int, default=None, help="embedding windows per document")
    parser.add_argument("--cache-dir", default=None, help="reuse embeddings of identical runs (.npy)")
    parser.add_argument("--seed", type=int, default=0, help="corpus sample, split and clustering seed")
    parser.add_argument(
        "--compare-final-picks",
        action="store_true",
        help="also score the subject's predicted best, best observed and re-evaluated top (--reeval-top) "
        "picks",
    )
    parser.add_argument("--reeval-top", type=int, default=3, help="mixtures re-evaluated with a second seed")
    parser.add_argument(
        "--histories", default=None, help="also write every search's mixtures, scores and rounds (JSON)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="proxies trained at once (default: the cores)"
    )
    parser.add_argument(
        "--workdir", default=None, help="where the token store and windows go (default: temp)"
    )



def strategy_config(name: str, budget: int, ratios: tuple[float, ...], candidates: int) -> StrategyConfig:
    cfg = replace(default_strategy(name, budget, Direction.MINIMIZE), n_candidates=candidates)
    return replace(cfg, ratios=ratios) if cfg.strategy.iterative else cfg


def oof_by_round(result: Any) -> list[float | None]:
    """Out-of-fold Spearman of the search's predictor on the history after each round."""
    from climb_dagster.core.search.rounds import cv_folds

    out: list[float | None] = []
    for r in range(int(result.rounds.max()) + 1):
        upto = result.rounds <= r
        folds = cv_folds(int(upto.sum()))
        if folds < 2:
            out.append(None)
            continue
        cv = cross_val_spearman(
            result.mixtures[upto], result.scores[upto], result.config.predictor, round_seed(0, r + 1), folds
        )
        out.append(float(cv) if np.isfinite(cv) else None)
    return out


def final_picks(
    result: Any, validation: ValidationLab, seed: int, prior: np.ndarray, top: int
) -> dict[str, np.ndarray]:
    """The final mixture chosen three ways: the predictor's best (the paper), the best observed proxy, and the
    best mean after re-evaluating the `top` best observed with a second proxy seed."""

    cfg = result.config
    predictor = fit_predictor(
        result.mixtures, result.scores, cfg.direction, round_seed(seed, cfg.n_rounds), cfg.predictor
    )
    predicted = select_final(
        replace(cfg, final="predicted"), predictor, result.mixtures, result.scores, seed, prior=prior
    )
    again = validation.evaluator(PROXY_SEED + SECOND_SEED + seed)
    reevaluated, _ = reevaluated_best(result.mixtures, result.scores, again, top, cfg.direction)
    return {
        "predicted": predicted,
        "observed": result.mixtures[result.best_observed].copy(),
        f"reeval_top{top}": reevaluated,
    }



def own_proxies_answer(
    lab: Lab, strategy: SearchStrategy, prior: np.ndarray, seed: int
) -> tuple[np.ndarray, int]:
    """The answer of a strategy that trains its own proxies (DoReMi: its averaged domain weights from its
    reference and DRO proxies, not cached), and the proxies it trained."""
    mixtures, _ = strategy.own_proxies_trainer()(lab.store, prior, lab.proxy, seed, None)
    return np.asarray(mixtures[0], dtype=np.float64), strategy.own_proxies


def _stderr(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def run_e2e(
    args: argparse.Namespace, lab: Lab, validation: ValidationLab, pool: Any = None
) -> dict[str, Any]:
    """Every strategy's searches and final retrains on a built lab (`pool`: a ProxyPool for the retrains;
    default: one at a time in this process)."""

    pool = pool or ProxyPool(lab)

    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    known = registered_strategies()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ClimbInputError(f"unknown strategies {unknown}; choose from {list(known)}")
    ratios = tuple(float(x) for x in args.ratios.split(","))
    prior = np.asarray(lab.store.n_tokens, dtype=np.float64)
    prior = prior / prior.sum()
    strategies: dict[str, Any] = {}
    picks: dict[str, dict[str, list[float]]] = {}
    oof: list[list[float | None]] = []
    histories: list[dict[str, Any]] = []

    def retrain(mixture: np.ndarray, s: int) -> tuple[float, float]:
        fresh = pool.scores(
            [(mixture, FRESH_SEED + 100 * s + j, ("test", "val")) for j in range(args.final_seeds)]
        )
        return float(np.nanmean([f[0] for f in fresh])), float(np.nanmean([f[1] for f in fresh]))

    for name in names:
        strategy = strategy_named(name)
        cfg = strategy_config(name, args.budget, ratios, args.candidates) if strategy.proposes else None
        subject = name == args.subject and cfg is not None
        test, val, evaluated, finals = [], [], [], []
        for s in range(args.seeds):
            if cfg is None:
                final, spent = own_proxies_answer(lab, strategy, prior, PROXY_SEED + s)
            else:
                result = run_search(cfg, validation.evaluator(PROXY_SEED + s), prior=prior, seed=s)
                final, spent = result.final_mixture, int(result.scores.size)
            evaluated.append(spent)
            if subject:
                oof.append(oof_by_round(result))
            if cfg is not None:
                histories.append(
                    {
                        "strategy": name,
                        "search_seed": s,
                        "mixtures": result.mixtures.round(6).tolist(),
                        "scores": result.scores.tolist(),
                        "rounds": result.rounds.tolist(),
                    }
                )
            t, v = retrain(final, s)
            test.append(t)
            val.append(v)
            finals.append([round(float(w), 4) for w in final])
            if subject and args.compare_final_picks:
                for pick, mixture in final_picks(result, validation, s, prior, args.reeval_top).items():
                    t, v = retrain(mixture, s)
                    picks.setdefault(pick, {"test": [], "val": []})
                    picks[pick]["test"].append(t)
                    picks[pick]["val"].append(v)
        strategies[name] = {
            "test_mean": float(np.mean(test)),
            "test_stderr": _stderr(test),
            "val_mean": float(np.mean(val)),
            "test_per_seed": test,
            "proxies_per_search": evaluated,
            "final_mixtures": finals,
        }
    by_round = []
    for r in range(max((len(o) for o in oof), default=0)):
        values = [o[r] for o in oof if r < len(o) and o[r] is not None]
        by_round.append(round(float(np.mean(values)), 4) if values else None)
    out: dict[str, Any] = {"strategies": strategies, "oof_spearman_by_round": by_round}
    if args.histories:

        atomic_write_text(make_path(args.histories), json.dumps(histories))
    if picks:
        key = f"{args.subject}_final_picks"
        out[key] = {
            pick: {
                "test_mean": float(np.mean(v["test"])),
                "test_stderr": _stderr(v["test"]),
                "val_mean": float(np.mean(v["val"])),
            }
            for pick, v in picks.items()
        }
        out[key]["reeval_extra_proxies_per_search"] = args.reeval_top
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:

    workers = args.workers or default_workers()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="climb-e2e-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        lab, _ = build_lab(args, work)
        with ProxyPool(lab, workers) as pool:
            validation = ValidationLab.of(lab, pool)
            out = run_e2e(args, lab, validation, pool)
    return {
        "direction": str(Direction.MINIMIZE),
        "budget": args.budget,
        "seeds": args.seeds,
        **out,
        "final_seeds": args.final_seeds,
        "n_superclusters": lab.n_superclusters,
        "docs": lab.docs,
        "proxies_trained": validation.trained,
        "proxies_failed": validation.failed,
        "proxy_tokens": lab.proxy.token_budget,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 1),
    }

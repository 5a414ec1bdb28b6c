"""End to end on real proxies: does climb's search find a better mixture than its ablations and baselines at the
same proxy budget, on pages no search saw, for a larger model trained longer?

    python -m climb_dagster.bench e2e --protocol full --save results/e2e.json
    python -m climb_dagster.bench e2e --protocol quick            # a smoke run (tests)

Protocol (issue 23): `--labs` labs, each its own corpus sample, held-out pages and clustering (bench/lab.py);
three targets, each split by title into validation (what a search sees) and test: one held-out domain, the
mean held-out loss of >= 3 domains, and a dictionary-definition multiple-choice task scored by the gold
answer's bits per byte (bench/mc_items.py). In every lab and for each of `--seeds` search seeds, every arm
(bench/arms.py) searches every target at the same proxy budget; a run is trained once and scored on every
target (bench/runs.py), so the targets' searches share what they have in common. Each final mixture is then
retrained with fresh seeds as a proxy and as the larger transfer model (`--transfer-*`: >= 4x parameters, 5x
tokens) and scored on every target's test split; the reference mixtures (natural, uniform, the target domain's
own super-clusters) likewise. Per target and arm the report gives the mean paired difference climb - arm over
the lab x seed cells with a 95% t interval on its degrees of freedom, the p-value and climb's win rate, on the
transfer test loss (the headline) and the proxy-size test loss, and the round each climb winner came from.
Prints one JSON object; `--workdir` keeps finished runs so an interrupted protocol resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.arms import (
    ARMS,
    REGMIX_TOP_K,
    ROUND_SEED_ARMS,
    SUBJECT,
    arm_config,
    arm_names,
    reevaluations,
)
from climb_dagster.bench.lab import SPLITS, Lab, add_lab_arguments
from climb_dagster.bench.proxy_pool import default_workers
from climb_dagster.bench.results import _commit
from climb_dagster.bench.runs import LabRuns, bench_workdir, lab_runs
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.io.storage import atomic_write_text, make_path
from climb_dagster.core.report.stats import paired_difference
from climb_dagster.core.search.predictor import cross_val_spearman
from climb_dagster.core.search.strategies import reevaluated_best, round_seed, run_search, strategy_named

# A search's proxies share one seed (mixtures differ, not luck); final retrains use seeds no search used.
PROXY_SEED = 1_000
FRESH_SEED = 20_000
TRANSFER_SEED = 30_000
# climb_seeds' round i trains with PROXY_SEED + seed + i * this (round 0: climb's own seed).
ROUND_SEED_STEP = 100
# climb_reeval's second evaluations of its best mixtures: one more seed per search, used by no other run.
REEVALUATE_SEED = 1_500

# Sizes of each protocol; an explicit option overrides its protocol's value. "full" is sized to finish
# within 150 minutes on the 2-core dev machine (README, "Evidence").
PROTOCOLS: dict[str, dict[str, Any]] = {
    "quick": {
        "labs": 1,
        "seeds": 2,
        "docs": 300,
        "budget": 6,
        "ratios": "3,2,1",
        "proxy": "tiny",
        "steps": 6,
        "final_seeds": 1,
        "transfer_seeds": 1,
        "reference_seeds": 1,
        "candidates": 500,
        "max_eval_windows": 8,
        "mc_items": 12,
        "k": 8,
        "superclusters": 4,
        "max_superclusters": 10,
    },
    "full": {
        "labs": 3,
        "seeds": 5,
        "docs": 3000,
        "budget": 20,
        "ratios": "4,2,1",
        "proxy": "small",
        "steps": None,
        "final_seeds": 1,
        "transfer_seeds": 1,
        "reference_seeds": 1,
        "candidates": 20_000,
        "max_eval_windows": 96,
        "mc_items": 150,
        "k": None,
        "superclusters": None,
        "max_superclusters": 8,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="full")
    add_lab_arguments(parser, targets="domain,blend,mc")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--doremi", action="store_true", help="add DoReMi (its own 2 proxies per search)")
    parser.add_argument("--regmix-top-k", type=int, default=REGMIX_TOP_K)
    parser.add_argument(
        "--reference-seeds", type=int, default=None, help="retrains of each reference per lab"
    )
    parser.add_argument("--histories", default=None, help="also write every search's history (JSON)")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with every option left unset taken from its protocol."""
    preset = PROTOCOLS[args.protocol]
    return argparse.Namespace(
        **{**vars(args), **{k: v for k, v in preset.items() if getattr(args, k) is None}}
    )


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


def _source_round(result: Any, mixture: np.ndarray) -> int | None:
    """The round of the evaluated row equal to the final mixture (None: a mixture no proxy was trained on)."""
    hit = np.flatnonzero(np.abs(result.mixtures - mixture).sum(axis=1) < 1e-9)
    return int(result.rounds[hit[0]]) if hit.size else None


def search_cell(
    args: argparse.Namespace, lab: Lab, runs: LabRuns, seed: int, arms: tuple[str, ...], histories: list[Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every arm's search of every target in one (lab, search seed) cell: final mixture and what it came from."""
    ratios = tuple(float(x) for x in args.ratios.split(","))
    finals: dict[tuple[str, str], dict[str, Any]] = {}
    doremi: dict[str, Any] | None = None
    for target in lab.targets:
        for arm in arms:
            cfg = arm_config(arm, args.budget, ratios, args.candidates, args.regmix_top_k)
            if cfg is None:
                if doremi is None:
                    train = strategy_named(arm).own_proxies_trainer()
                    mixtures, _ = train(lab.store, lab.prior, lab.proxy, PROXY_SEED + seed, None)
                    doremi = {"mixture": np.asarray(mixtures[0]), "proxies": strategy_named(arm).own_proxies}
                finals[(target.name, arm)] = dict(doremi)
                continue
            step = ROUND_SEED_STEP if arm in ROUND_SEED_ARMS else 0
            result = run_search(
                cfg, runs.evaluator(PROXY_SEED + seed, target.name, step), prior=lab.prior, seed=seed
            )
            final = result.final_mixture
            again = reevaluations(arm, args.budget, ratios)
            if again:
                final, _ = reevaluated_best(
                    result.mixtures,
                    result.scores,
                    runs.evaluator(REEVALUATE_SEED + seed, target.name),
                    again,
                    Direction.MINIMIZE,
                )
            info: dict[str, Any] = {
                "mixture": final,
                "proxies": int(result.scores.size) + again,
                "round": _source_round(result, final),
                "rounds": int(result.rounds.max()) + 1,
            }
            if arm == SUBJECT:
                info["oof_spearman_by_round"] = oof_by_round(result)
            finals[(target.name, arm)] = info
            histories.append(
                {
                    "lab": lab.seed,
                    "seed": seed,
                    "target": target.name,
                    "arm": arm,
                    "mixtures": result.mixtures.round(6).tolist(),
                    "scores": result.scores.tolist(),
                    "rounds": result.rounds.tolist(),
                }
            )
    return finals


def retrain_jobs(
    mixture: np.ndarray, cell_seed: int, args: argparse.Namespace, n_proxy: int | None = None
) -> list:
    """Fresh proxy-size and transfer retrains of one mixture (the seeds depend on the cell only: paired)."""
    n_proxy = args.final_seeds if n_proxy is None else n_proxy
    jobs = [(mixture, FRESH_SEED + 100 * cell_seed + j, "proxy", SPLITS) for j in range(n_proxy)]
    jobs += [
        (mixture, TRANSFER_SEED + 100 * cell_seed + j, "transfer", SPLITS) for j in range(args.transfer_seeds)
    ]
    return jobs


def _mean_scores(got: list[dict[str, float]], jobs: list, size: str, key: str) -> float:
    values = [g.get(key, float("nan")) for g, j in zip(got, jobs, strict=True) if j[2] == size]
    return float(np.mean(values)) if values else float("nan")


def _score_fields(got: list[dict[str, float]], jobs: list, target: Any) -> dict[str, float]:
    t = target.name
    out = {
        "transfer_test": _mean_scores(got, jobs, "transfer", f"{t}:test"),
        "proxy_test": _mean_scores(got, jobs, "proxy", f"{t}:test"),
        "proxy_val": _mean_scores(got, jobs, "proxy", f"{t}:val"),
        "transfer_val": _mean_scores(got, jobs, "transfer", f"{t}:val"),
    }
    if target.definition.kind == "mc":
        out["transfer_test_accuracy"] = _mean_scores(got, jobs, "transfer", f"{t}:test:acc")
    return out


def run_cell(
    args: argparse.Namespace, lab: Lab, runs: LabRuns, seed: int, arms: tuple[str, ...], histories: list[Any]
) -> dict[str, Any]:
    finals = search_cell(args, lab, runs, seed, arms, histories)
    jobs_of = {key: retrain_jobs(info["mixture"], seed, args) for key, info in finals.items()}
    flat = [j for jobs in jobs_of.values() for j in jobs]
    got_flat = runs.scores(flat)
    targets = {t.name: t for t in lab.targets}
    out: dict[str, dict[str, Any]] = {}
    i = 0
    for (t, arm), info in finals.items():
        jobs = jobs_of[(t, arm)]
        got = got_flat[i : i + len(jobs)]
        i += len(jobs)
        row = {k: v for k, v in info.items() if k != "mixture"}
        row["mixture"] = [round(float(w), 4) for w in info["mixture"]]
        out.setdefault(t, {})[arm] = {**row, **_score_fields(got, jobs, targets[t])}
    return {"lab": lab.seed, "seed": seed, "targets": out}


def run_references(args: argparse.Namespace, lab: Lab, runs: LabRuns) -> dict[str, Any]:
    """The reference mixtures retrained with the first `--reference-seeds` cells' fresh seeds."""
    out: dict[str, dict[str, Any]] = {}
    for name, mixture in lab.references.items():
        m = np.asarray(mixture)
        for r in range(args.reference_seeds):
            jobs = retrain_jobs(m, r, args, n_proxy=args.final_seeds)
            got = runs.scores(jobs)
            for target in lab.targets:
                if name == "domain_only" and target.name != "domain":
                    continue
                row = out.setdefault(target.name, {}).setdefault(
                    name, {"transfer_test": [], "proxy_test": []}
                )
                fields = _score_fields(got, jobs, target)
                row["transfer_test"].append(fields["transfer_test"])
                row["proxy_test"].append(fields["proxy_test"])
    return out


def _paired(rows: list[dict[str, Any]], arm: str, measure: str) -> dict[str, Any]:
    """climb - arm over the cells where both retrains finished (a diverged one is counted, not hidden)."""
    a = np.asarray([r[SUBJECT][measure] for r in rows], dtype=np.float64)
    b = np.asarray([r[arm][measure] for r in rows], dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return {"n": int(ok.sum()), "excluded_diverged": int((~ok).sum())}
    out = paired_difference(a[ok], b[ok], Direction.MINIMIZE).to_dict()
    return {**out, "excluded_diverged": int((~ok).sum())}


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize(
    cells: list[dict[str, Any]], references: list[dict[str, Any]], arms: tuple[str, ...]
) -> dict[str, Any]:
    """Per target: each arm's means, the paired differences climb - arm, climb's winner rounds, references."""
    targets = list(cells[0]["targets"])
    out: dict[str, Any] = {}
    for t in targets:
        rows = [c["targets"][t] for c in cells]
        fields = ("transfer_test", "proxy_test", "proxy_val", "transfer_test_accuracy")
        arm_means = {
            arm: {f: _nanmean([r[arm].get(f) for r in rows]) for f in fields if f in rows[0][arm]}
            for arm in arms
        }
        paired = {}
        for arm in arms:
            if arm == SUBJECT:
                continue
            paired[arm] = {
                measure: _paired(rows, arm, measure) for measure in ("transfer_test", "proxy_test")
            }
        rounds = Counter(str(r[SUBJECT].get("round")) for r in rows)
        oof = [r[SUBJECT].get("oof_spearman_by_round") or [] for r in rows]
        by_round = []
        for k in range(max((len(o) for o in oof), default=0)):
            values = [o[k] for o in oof if k < len(o) and o[k] is not None]
            by_round.append(round(float(np.mean(values)), 4) if values else None)
        refs: dict[str, dict[str, float]] = {}
        for lab_refs in references:
            for name, row in lab_refs.get(t, {}).items():
                acc = refs.setdefault(name, {"transfer_test": [], "proxy_test": []})
                acc["transfer_test"] += row["transfer_test"]
                acc["proxy_test"] += row["proxy_test"]
        out[t] = {
            "arms": arm_means,
            "paired": paired,
            "climb_winner_rounds": dict(sorted(rounds.items())),
            "climb_oof_spearman_by_round": by_round,
            "references": {
                name: {k: _nanmean(v) for k, v in row.items()} | {"n": len(row["transfer_test"])}
                for name, row in refs.items()
            },
        }
    return out


def goal(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 23's goal: on >= 2 targets, climb's transfer test loss below random_design's and RegMix's with the
    paired 95% interval excluding zero (its upper bound below 0)."""
    per_target = {}
    for t, s in summary.items():
        wins = {
            arm: bool(s["paired"][arm]["transfer_test"].get("high", 0.0) < 0)
            for arm in ("random_design", "regmix")
            if arm in s["paired"]
        }
        per_target[t] = {"beats": wins, "both": bool(wins) and all(wins.values())}
    met = sum(v["both"] for v in per_target.values())
    return {"targets_won": met, "met": met >= min(2, len(per_target)), "per_target": per_target}


def _progress(work: Path, cell: dict[str, Any], runs: LabRuns, t0: float) -> None:
    """One line per finished cell on stderr and in `work/cells.jsonl` (a long protocol's partial record)."""
    import sys

    with (work / "cells.jsonl").open("a") as f:
        f.write(json.dumps(cell) + "\n")
    print(
        f"e2e: lab {cell['lab']} seed {cell['seed']} done in {cell['wall_s']} s (total "
        f"{time.perf_counter() - t0:.0f} s; trained {runs.trained}, reused {runs.reused})",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    args = resolve(args)
    arms = arm_names(args.arms, args.doremi)
    workers = args.workers or default_workers()
    t0 = time.perf_counter()
    commit = _commit()
    cells: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    labs: list[dict[str, Any]] = []
    histories: list[Any] = []
    with bench_workdir(args.workdir, "climb-e2e-") as work:
        for i in range(args.labs):
            lab_seed = args.seed + i
            with lab_runs(args, work, lab_seed, workers) as (lab, runs, built_s):
                for s in range(args.seeds):
                    t_cell = time.perf_counter()
                    cell = run_cell(args, lab, runs, s, arms, histories)
                    cell["wall_s"] = round(time.perf_counter() - t_cell, 1)
                    cells.append(cell)
                    _progress(work, cell, runs, t0)
                references.append(run_references(args, lab, runs))
            labs.append(
                {
                    "seed": lab_seed,
                    "n_superclusters": lab.n_superclusters,
                    "docs": lab.docs,
                    "build_s": round(built_s, 1),
                    "runs_trained": runs.trained,
                    "train_seconds": {k: round(v, 1) for k, v in runs.seconds.items()},
                    "runs_reused": runs.reused,
                    "proxies_failed": runs.failed,
                }
            )
    if args.histories:
        atomic_write_text(make_path(args.histories), json.dumps(histories))
    summary = summarize(cells, references, arms)
    return {
        "protocol": args.protocol,
        "commit_at_start": commit,
        "direction": str(Direction.MINIMIZE),
        "labs": args.labs,
        "seeds": args.seeds,
        "cells": len(cells),
        "budget": args.budget,
        "ratios": args.ratios,
        "regmix_top_k": args.regmix_top_k,
        "arms": list(arms),
        "targets": {
            t.name: {
                "kind": t.definition.kind,
                "domains": list(t.definition.domains),
                "metric": t.definition.metric,
            }
            for t in lab.targets
        },
        "models": {
            size: {
                "params": cfg.model.n_params,
                "tokens": cfg.token_budget,
                "d_model": cfg.model.d_model,
                "layers": cfg.model.n_layers,
                "device": cfg.train.device,
            }
            for size, cfg in (("proxy", lab.proxy), ("transfer", lab.transfer))
        },
        "docs": args.docs,
        "summary": summary,
        "goal": goal(summary),
        "lab_details": labs,
        "cells_detail": cells,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 1),
    }

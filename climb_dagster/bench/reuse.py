"""Proxy evidence across an update (issue 24): does a search that reuses the previous experiment's proxies reach
the from-scratch test loss with at most half the new proxies?

    python -m climb_dagster.bench reuse [--protocol full|quick] [--updates add_drop,refit] [--save results/reuse.json]

Per lab (the e2e lab's corpus, split and targets; `reuse_lab.py`) and search seed s: climb searches the lab
before the update (budget B; the "previous experiment"). After each update (a drop added; centroids refitted) the
same target is searched again on the new lab, at the same proxy seed:
- scratch: climb, budget B, from nothing;
- reuse: climb, budget `--reuse-budget`, starting from the previous search's runs re-expressed over the new
  super-clusters (errors above `--max-error` left out), round 0 shrunk and spread around them;
- freeze (add_drop only, where >= 2 super-clusters are unchanged and some are not): reuse in freeze-and-expand
  mode, the unchanged super-clusters kept at the previous final's ratios;
- stale: the previous final re-expressed, not searched again (what skipping the search would give).
Every final is retrained on the new lab with fresh seeds (proxy size and the larger transfer model, as in
`bench e2e`) and scored on the test split; searches only ever see validation scores. Paired differences arm -
scratch with 95% t intervals; the goal: reuse's transfer test loss within scratch's 95% interval with <= 50% of
scratch's new proxies, on both updates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from climb_dagster.bench.arms import arm_config
from climb_dagster.bench.e2e import PROTOCOLS as E2E_PROTOCOLS
from climb_dagster.bench.e2e import PROXY_SEED, _score_fields, retrain_jobs
from climb_dagster.bench.lab import add_lab_arguments
from climb_dagster.bench.proxy_pool import ProxyPool, default_workers
from climb_dagster.bench.results import _commit
from climb_dagster.bench.reuse_lab import UPDATES, ReuseLab, build_reuse_labs
from climb_dagster.bench.runs import LabRuns, bench_workdir
from climb_dagster.core.common import schema
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.proxy.composition import run_composition
from climb_dagster.core.report.stats import paired_difference
from climb_dagster.core.reuse.mapping import DEFAULT_MIN_OVERLAP
from climb_dagster.core.reuse.reexpress import DEFAULT_MAX_ERROR, reexpress
from climb_dagster.core.reuse.rows import reuse_rows
from climb_dagster.core.search.freeze import frozen_block, run_frozen_search
from climb_dagster.core.search.strategies import run_search

SUBJECT = "climb"
ARMS = ("scratch", "reuse", "freeze", "stale")

# The e2e protocols' lab and model sizes, one lab, and the reuse arms' budget (half of B).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "quick": {**E2E_PROTOCOLS["quick"], "labs": 1, "reuse_budget": 3},
    "full": {**E2E_PROTOCOLS["full"], "labs": 1, "reuse_budget": 10},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="full")
    add_lab_arguments(parser, targets="blend")
    parser.add_argument(
        "--reuse-budget", type=int, default=None, help="the reuse arms' budget (<= half of B)"
    )
    parser.add_argument("--updates", default=",".join(UPDATES), help=f"of {UPDATES}")
    parser.add_argument(
        "--min-overlap", type=float, default=DEFAULT_MIN_OVERLAP, help="a fine cluster unchanged at this share"
    )
    parser.add_argument(
        "--max-error", type=float, default=DEFAULT_MAX_ERROR, help="reuse a run up to this error"
    )


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    preset = PROTOCOLS[args.protocol]
    return argparse.Namespace(
        **{**vars(args), **{k: v for k, v in preset.items() if getattr(args, k, None) is None}}
    )


def evidence_table(lab: Any, result: Any, proxy_seed: int) -> Any:
    """The previous search as its evaluations table would store it: weights, validation score, composition."""
    import polars as pl

    rows = []
    for i, (m, score) in enumerate(zip(result.mixtures, result.scores, strict=True)):
        comp = run_composition(lab.store, m, lab.proxy, proxy_seed)
        rows.append(
            {
                schema.PROXY_KEY: f"old-{proxy_seed}-{i}",
                schema.STATUS: schema.OK,
                schema.SCORE: float(score),
                schema.COMPOSITION: None if comp is None else json.dumps(comp.to_dict()),
                **{schema.weight_column(j): float(w) for j, w in enumerate(m)},
            }
        )
    return pl.DataFrame(rows, schema_overrides={schema.COMPOSITION: pl.String})


def search_update(
    args: argparse.Namespace, rl: ReuseLab, runs_old: LabRuns, runs_new: LabRuns, seed: int, target: str
) -> dict[str, dict[str, Any]]:
    """Every arm's final on the new lab for one search seed, with the proxies it trained and reused."""
    ratios = tuple(float(x) for x in args.ratios.split(","))
    proxy_seed = PROXY_SEED + seed
    cfg = arm_config(SUBJECT, args.budget, ratios, args.candidates, 1)
    previous = run_search(cfg, runs_old.evaluator(proxy_seed, target), prior=rl.old.prior, seed=seed)
    rows = reuse_rows([("previous", evidence_table(rl.old, previous, proxy_seed))], rl.cmap, args.max_error)
    out: dict[str, dict[str, Any]] = {"previous": {"proxies": int(previous.scores.size)}}
    scratch = run_search(cfg, runs_new.evaluator(proxy_seed, target), prior=rl.new.prior, seed=seed)
    out["scratch"] = {"mixture": scratch.final_mixture, "proxies": scratch.n_trained, "reused": 0}
    small = arm_config(SUBJECT, args.reuse_budget, ratios, args.candidates, 1)
    evidence = (rows.mixtures, rows.scores) if len(rows) else None
    reuse = run_search(
        small, runs_new.evaluator(proxy_seed, target), prior=rl.new.prior, seed=seed, reused=evidence
    )
    out["reuse"] = {
        "mixture": reuse.final_mixture,
        "proxies": reuse.n_trained,
        "reused": reuse.n_reused,
        **_rows(rows),
    }
    old_final = previous.final_mixture
    comp = run_composition(rl.old.store, old_final, rl.old.proxy, proxy_seed)
    stale = reexpress(comp, old_final, rl.cmap, max_error=1.0)
    out["stale"] = {"mixture": stale.weights, "proxies": 0, "reused": 0, "error": round(stale.error, 4)}
    if rl.facts["freeze"] == "run":
        block = frozen_block(stale.weights, rl.unchanged)
        frozen = run_frozen_search(
            small, runs_new.evaluator(proxy_seed, target), block, rl.new.prior, seed=seed, reused=evidence
        )
        out["freeze"] = {
            "mixture": frozen.final_mixture,
            "proxies": frozen.n_trained,
            "reused": frozen.n_reused,
            "frozen": list(block.frozen),
        }
    return out


def _rows(rows: Any) -> dict[str, Any]:
    s = rows.summary()
    return {"past_runs": s["past_runs"], "excluded": s["excluded"], "mean_error": s["mean_error"]}


def _paired(cells: list[dict[str, Any]], arm: str, measure: str) -> dict[str, Any] | None:
    pairs = [(c[arm][measure], c["scratch"][measure]) for c in cells if arm in c]
    a = np.asarray([p[0] for p in pairs], dtype=np.float64)
    b = np.asarray([p[1] for p in pairs], dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return None
    return paired_difference(a[ok], b[ok], Direction.MINIMIZE).to_dict()


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per update: each arm's means, the paired differences arm - scratch, and the goal."""
    from scipy import stats

    out: dict[str, Any] = {}
    for kind in sorted({c["update"] for c in cells}):
        rows = [c["arms"] for c in cells if c["update"] == kind]
        arms = [a for a in ARMS if any(a in r for r in rows)]
        means = {
            a: {
                f: float(np.nanmean([r[a][f] for r in rows if a in r]))
                for f in ("transfer_test", "proxy_test", "proxies", "reused")
            }
            for a in arms
        }
        scratch = np.asarray([r["scratch"]["transfer_test"] for r in rows], dtype=np.float64)
        n = int(np.isfinite(scratch).sum())
        half = (
            float(stats.t.ppf(0.975, n - 1) * np.nanstd(scratch, ddof=1) / np.sqrt(n))
            if n >= 2
            else float("nan")
        )
        interval = [float(np.nanmean(scratch)) - half, float(np.nanmean(scratch)) + half]
        reuse = means["reuse"]["transfer_test"]
        share = means["reuse"]["proxies"] / means["scratch"]["proxies"]
        out[kind] = {
            "means": means,
            "paired_vs_scratch": {
                a: {m: _paired(rows, a, m) for m in ("transfer_test", "proxy_test")}
                for a in arms
                if a != "scratch"
            },
            "scratch_transfer_test_95": interval,
            "goal": {
                # Reaching scratch's loss within its interval: at or below its upper end.
                "reuse_within_scratch_interval": bool(reuse <= interval[1]),
                "new_proxies_share": round(share, 3),
                "at_most_half": share <= 0.5,
            },
        }
    met = all(v["goal"]["reuse_within_scratch_interval"] and v["goal"]["at_most_half"] for v in out.values())
    return {"updates": out, "goal_met": bool(out) and met}


def run(args: argparse.Namespace) -> dict[str, Any]:
    args = resolve(args)
    if args.reuse_budget > args.budget // 2:
        raise SystemExit(f"--reuse-budget {args.reuse_budget} is more than half of --budget {args.budget}")
    workers = args.workers or default_workers()
    t0 = time.perf_counter()
    commit = _commit()
    cells: list[dict[str, Any]] = []
    labs: list[dict[str, Any]] = []
    with bench_workdir(args.workdir, "climb-reuse-") as work:
        for i in range(args.labs):
            lab_seed = args.seed + i
            reuse_labs = build_reuse_labs(args, work / f"lab-{lab_seed}", lab_seed)
            for kind, rl in reuse_labs.items():
                with ProxyPool(rl.old, workers) as pool_old, ProxyPool(rl.new, workers) as pool_new:
                    runs_old = LabRuns(rl.old, pool_old, work / f"runs-lab-{lab_seed}-old.jsonl")
                    runs_new = LabRuns(rl.new, pool_new, work / f"runs-lab-{lab_seed}-{kind}.jsonl")
                    target = rl.new.targets[0]
                    for s in range(args.seeds):
                        arms = search_update(args, rl, runs_old, runs_new, s, target.name)
                        jobs_of = {
                            a: retrain_jobs(np.asarray(v["mixture"]), s, args)
                            for a, v in arms.items()
                            if "mixture" in v
                        }
                        got = runs_new.scores([j for jobs in jobs_of.values() for j in jobs])
                        k = 0
                        for a, jobs in jobs_of.items():
                            arms[a].update(_score_fields(got[k : k + len(jobs)], jobs, target))
                            arms[a]["mixture"] = [round(float(w), 4) for w in arms[a]["mixture"]]
                            k += len(jobs)
                        cells.append(
                            {"lab": lab_seed, "update": kind, "seed": s, "target": target.name, "arms": arms}
                        )
                        print(
                            f"reuse: lab {lab_seed} {kind} seed {s} done ({time.perf_counter() - t0:.0f} s; trained "
                            f"{runs_old.trained} before, {runs_new.trained} after)",
                            file=sys.stderr,
                            flush=True,
                        )
                    labs.append(
                        {
                            "seed": lab_seed,
                            "update": kind,
                            **rl.facts,
                            "runs_trained_old": runs_old.trained,
                            "runs_trained_new": runs_new.trained,
                        }
                    )
    return {
        "bench": "reuse",
        "protocol": args.protocol,
        "commit": commit,
        "args": {k: v for k, v in sorted(vars(args).items()) if k not in ("workdir", "cache_dir")},
        "summary": summarize(cells),
        "labs": labs,
        "cells": cells,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 1),
    }

"""bench transfer: is a proxy's ranking of mixtures worth refining? In the labs of bench e2e, a maximin spread of
mixtures (drawn as climb's first round draws them) is trained with several seeds at proxy size and at the
transfer model's size, and scored on every target's validation split (test splits are never read).

Per target it reports each size's seed noise against the spread between mixtures (`core/report/noise.py`) and
how the proxy's ranking carries to the transfer model: over all mixtures, with one proxy seed (what a search
sees), and among the proxy's better half (where climb's later rounds choose). A search can only add value on
the transfer model where that last figure is well above 0.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from climb_dagster.bench.e2e import PROTOCOLS
from climb_dagster.bench.lab import SPLITS, add_lab_arguments
from climb_dagster.bench.proxy_pool import default_workers
from climb_dagster.bench.results import _commit
from climb_dagster.bench.runs import LabRuns, bench_workdir, lab_runs
from climb_dagster.core.report.noise import rank_transfer, seed_noise
from climb_dagster.core.search.sampling import sample_mixtures
from climb_dagster.core.search.strategies.draws import maximin

# Seeds of this bench's runs: apart from every seed bench e2e trains with, so neither reuses the other's runs.
NOISE_SEED = 40_000
SIZES = ("proxy", "transfer")
STUDY = {"quick": {"mixtures": 4, "noise_seeds": 2}, "full": {"mixtures": 16, "noise_seeds": 3}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="full")
    add_lab_arguments(parser, targets="domain,blend,mc")
    parser.add_argument("--mixtures", type=int, default=None, help="mixtures per lab (maximin over draws)")
    parser.add_argument("--noise-seeds", type=int, default=None, help="seeds per mixture and size")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    preset = {**PROTOCOLS[args.protocol], **STUDY[args.protocol]}
    return argparse.Namespace(
        **{**vars(args), **{k: v for k, v in preset.items() if hasattr(args, k) and getattr(args, k) is None}}
    )


def study_mixtures(prior: np.ndarray, n: int, candidates: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, NOISE_SEED])
    cands = sample_mixtures(candidates, prior, rng)
    return cands[maximin(cands, n, rng)]


def lab_study(lab: Any, runs: LabRuns, args: argparse.Namespace) -> dict[str, Any]:
    mixtures = study_mixtures(lab.prior, args.mixtures, args.candidates, lab.seed)
    seeds = [NOISE_SEED + j for j in range(args.noise_seeds)]
    jobs = [(m, s, size, SPLITS) for size in SIZES for m in mixtures for s in seeds]
    got = runs.scores(jobs)
    n, k = len(mixtures), len(seeds)
    out: dict[str, Any] = {"mixtures": np.round(mixtures, 4).tolist(), "targets": {}}
    for target in lab.targets:
        key = f"{target.name}:val"
        by_size = {
            size: np.array([g.get(key, np.nan) for g in got[i * n * k : (i + 1) * n * k]]).reshape(n, k)
            for i, size in enumerate(SIZES)
        }
        out["targets"][target.name] = {
            "scores": {size: np.round(v, 5).tolist() for size, v in by_size.items()},
            **{f"{size}_noise": seed_noise(v).to_dict() for size, v in by_size.items()},
            "rank_transfer": rank_transfer(by_size["proxy"], by_size["transfer"]).to_dict(),
        }
    return out


def summarize(labs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target, the mean over labs of every figure."""
    out: dict[str, Any] = {}
    for target in labs[0]["targets"]:
        rows = [lab["targets"][target] for lab in labs]
        out[target] = {
            part: {f: round(float(np.mean([r[part][f] for r in rows])), 4) for f in rows[0][part]}
            for part in ("proxy_noise", "transfer_noise", "rank_transfer")
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    args = resolve(args)
    workers = args.workers or default_workers()
    t0 = time.perf_counter()
    commit = _commit()
    labs: list[dict[str, Any]] = []
    with bench_workdir(args.workdir, "climb-transfer-") as work:
        for i in range(args.labs):
            lab_seed = args.seed + i
            with lab_runs(args, work, lab_seed, workers) as (lab, runs, _):
                labs.append({"seed": lab_seed, **lab_study(lab, runs, args), "runs_trained": runs.trained})
            models = {
                size: {"params": cfg.model.n_params, "tokens": cfg.token_budget}
                for size, cfg in (("proxy", lab.proxy), ("transfer", lab.transfer))
            }
    return {
        "protocol": args.protocol,
        "commit_at_start": commit,
        "labs": [lab["seed"] for lab in labs],
        "mixtures": args.mixtures,
        "noise_seeds": args.noise_seeds,
        "models": models,
        "split": "validation",
        "summary": summarize(labs),
        "lab_details": labs,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 1),
    }

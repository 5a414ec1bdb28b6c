"""How time and memory grow with the corpus, through the real pipeline (issue 22):

    python -m climb_dagster.bench scale --docs 100000,300000,1000000 [--drop-size 50000] [--embedder hashing]

For each corpus size: synthetic drops of real-looking text (`bench/synthetic.py`) land in a fresh home, and the
code location's own jobs run them as the sensors would (the same assets through the Dagster job path, every step
in its own process under the multiprocess executor, per-drop runs `--workers` at a time): ingest, embed, rate,
fit centroids, assign, profile, prune and merge, tokenizer, per-drop tokens, token index, one tiny experiment
(proxies, predictor, final mixture) and its per-drop export. Embedding uses the hashing stand-in (`--embedder
hashing`, the only choice: embedding throughput has its own benchmark, `bench embed`).

Per stage it reports the summed step seconds, the stage's wall seconds, the largest peak RSS of its step processes
(each step logs its own, climb_dagster.hooks.step_memory), documents per step-second, and, over the sizes, the
fitted growth exponents b of time and memory (least squares of log y = log a + b log N). The projection to
`--project` documents (default 800M, ClimbLab) with `--project-workers` W parallel workers extrapolates each
stage's fitted time, T(N) = a N^b: a per-drop stage's steps run W at a time (T/W), a single step runs alone (T).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.results import machine
from climb_dagster.bench.synthetic import heldout_target, write_synthetic_drops
from climb_dagster.hooks import PEAK_RSS_PREFIX

# Stages in pipeline order: (name, job, per drop?, the asset keys / op names whose steps belong to it).
STAGES: list[tuple[str, str, bool, tuple[str, ...]]] = [
    ("ingest", "drop_embedding_job", True, ("raw_documents",)),
    ("embed", "drop_embedding_job", True, ("document_embeddings",)),
    ("quality", "drop_embedding_job", True, ("document_quality",)),
    ("centroids", "refit_centroids_job", False, ("cluster_centroids",)),
    ("assign", "reassign_drop_job", True, ("cluster_assignments",)),
    ("profile", "reassign_drop_job", True, ("cluster_profiles",)),
    ("prune_merge", "merge_clusters_job", False, ("cluster_quality", "pruned_clusters", "super_clusters")),
    ("tokenizer", "proxy_tokenizer_job", False, ("proxy_tokenizer",)),
    ("drop_tokens", "drop_tokens_job", True, ("drop_tokens",)),
    ("token_index", "proxy_data_job", False, ("cluster_tokens",)),
    ("experiment", "climb_experiment_job", False, ("experiment", "round_", "final_mixture")),
    ("export_drops", "climb_experiment_job", True, ("mixture_export.export_drop",)),
    ("export", "climb_experiment_job", False, ("mixture_export.export_plan", "mixture_export.export_publish")),
]
PER_DROP_JOBS = ("drop_embedding_job", "reassign_drop_job", "drop_tokens_job")
PEAK_RE = re.compile(re.escape(PEAK_RSS_PREFIX) + r" ([0-9.]+) MiB")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docs", default="100000,300000,1000000", help="corpus sizes, comma-separated")
    parser.add_argument("--drop-size", type=int, default=50_000, help="documents per crawl drop")
    parser.add_argument("--embedder", choices=["hashing"], default="hashing", help="see the module docstring")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="per-drop runs at once")
    parser.add_argument("--rounds", default="2,1", help="proxies per round of the tiny experiment")
    parser.add_argument("--proxy-steps", type=int, default=8, help="optimizer steps per proxy")
    parser.add_argument("--project", type=float, default=800e6, help="documents to project the wall time to")
    parser.add_argument("--project-workers", type=int, default=64, help="W parallel workers of the projection")
    parser.add_argument("--workdir", default=None, help="where the homes go (default: temp; removed after)")
    parser.add_argument("--keep", action="store_true", help="keep each size's home")
    parser.add_argument(
        "--start-method",
        choices=["spawn", "forkserver"],
        default="spawn",
        help="how step processes start: spawn (a fresh interpreter, as a pod; default) or forkserver (forked "
        "from a process that imported the code location: faster starts, but every step's peak RSS then includes "
        "the forkserver's ~0.6 GB)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)


def _stage_of(step_key: str, job: str) -> str | None:
    for name, stage_job, _, keys in STAGES:
        if stage_job != job:
            continue
        if any(step_key == k or step_key.startswith(k) for k in keys):
            return name
    return None


class _Recorder:
    """Per stage: step seconds, peak RSS of each step, wall time of its runs."""

    def __init__(self) -> None:
        self.step_s: dict[str, float] = defaultdict(float)
        self.steps: dict[str, int] = defaultdict(int)
        self.peak: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)

    def add_run(self, instance: Any, run_id: str, job: str) -> None:
        import dagster as dg

        starts: dict[str, float] = {}
        for event in instance.all_logs(run_id):
            key = event.step_key
            if not key:
                continue
            stage = _stage_of(key, job)
            if stage is None:
                continue
            kind = event.dagster_event.event_type if event.dagster_event else None
            if kind == dg.DagsterEventType.STEP_START:
                starts[key] = event.timestamp
            elif kind == dg.DagsterEventType.STEP_SUCCESS and key in starts:
                self.step_s[stage] += event.timestamp - starts[key]
                self.steps[stage] += 1
            elif kind is None and event.user_message:
                found = PEAK_RE.search(event.user_message)
                if found:
                    self.peak[stage] = max(self.peak[stage], float(found.group(1)))


FORKSERVER_PRELOAD = ["climb_dagster.bench.scale_defs", "torch", "climb_dagster.core.proxy.model", "lightgbm"]


def _run(
    job: str, instance: Any, partition: str | None, run_config: dict | None, start_method: str
) -> str:
    import dagster as dg

    method = (
        {"forkserver": {"preload_modules": FORKSERVER_PRELOAD}} if start_method == "forkserver" else {"spawn": {}}
    )
    settings = {"start_method": method, **(run_config or {}).get("execution", {}).get("config", {})}
    # Jobs on the default executor choose it by key; the experiment job has the multiprocess executor itself.
    explicit = job == "climb_experiment_job"
    execution = {"execution": {"config": settings if explicit else {"multiprocess": settings}}}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **execution}
    tags = {"dagster/partition": partition} if partition else {}
    recon = dg.build_reconstructable_job("climb_dagster.bench.scale_defs", "job", reconstructable_args=(job,))
    with dg.execute_job(
        recon,
        instance=instance,
        tags=tags,
        run_config={**{k: v for k, v in (run_config or {}).items() if k != "execution"}, **quiet},
        raise_on_error=True,
    ) as result:
        assert result.success, f"{job} {partition or ''} failed"
        return result.run_id


def _size(args: argparse.Namespace, n_docs: int, work: Path) -> dict[str, Any]:
    """One corpus size through the pipeline in a fresh home; per-stage measurements."""
    home = work / f"home-{n_docs}"
    shutil.rmtree(home, ignore_errors=True)
    env = {
        "CLIMB_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
    }
    os.environ.update(env)
    (home / "dagster_home").mkdir(parents=True)
    t0 = time.perf_counter()
    drops = write_synthetic_drops(home / "landing", n_docs, args.drop_size, args.seed)
    target = heldout_target(home / "targets" / "heldout.parquet", seed=args.seed)
    synth_s = time.perf_counter() - t0


    from climb_dagster.assets.targets import documents_target
    from climb_dagster.demo.instance import open_instance
    from climb_dagster.partitions import crawl_drops, experiments

    instance = open_instance()
    keys = sorted(drops)
    instance.add_dynamic_partitions(crawl_drops.name, keys)
    rec = _Recorder()
    wall: dict[str, float] = {}

    def per_drop(job: str) -> None:
        started = time.perf_counter()
        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            for run_id in pool.map(lambda k: _run(job, instance, k, None, args.start_method), keys):
                rec.add_run(instance, run_id, job)
        wall[job] = time.perf_counter() - started

    def single(job: str, run_config: dict | None = None, partition: str | None = None) -> None:
        started = time.perf_counter()
        rec.add_run(instance, _run(job, instance, partition, run_config, args.start_method), job)
        wall[job] = time.perf_counter() - started

    per_drop("drop_embedding_job")
    single("refit_centroids_job")
    per_drop("reassign_drop_job")
    single("merge_clusters_job")
    single("proxy_tokenizer_job")
    per_drop("drop_tokens_job")
    single("proxy_data_job")
    instance.add_dynamic_partitions(experiments.name, ["scale"])
    spec = {
        "target": documents_target(str(target)),
        "rounds": [int(r) for r in args.rounds.split(",")],
        "proxy_steps": args.proxy_steps,
    }
    single(
        "climb_experiment_job",
        {"ops": {"experiment": {"config": spec}}, "execution": {"config": {"max_concurrent": args.workers}}},
        "scale",
    )
    total_s = time.perf_counter() - t0
    stages = {}
    for name, _, is_per_drop, _ in STAGES:
        seconds = rec.step_s.get(name, 0.0)
        stages[name] = {
            "per_drop": is_per_drop,
            "steps": rec.steps.get(name, 0),
            "step_seconds": round(seconds, 2),
            "peak_rss_mib": rec.peak.get(name),
            "docs_per_step_second": round(n_docs / seconds, 1) if seconds else None,
        }
    row = {
        "docs": n_docs,
        "drops": len(keys),
        "synthesis_seconds": round(synth_s, 1),
        "pipeline_wall_seconds": round(total_s - synth_s, 1),
        "job_wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        "disk_mib": round(sum(p.stat().st_size for p in home.rglob("*") if p.is_file()) / 2**20, 1),
        "stages": stages,
    }
    instance.dispose()
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return row


def growth(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least-squares fit of log y = log a + b log x over the positive points: {"a", "b"}, None below 2 points."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    b, log_a = np.polyfit(lx, ly, 1)
    return {"a": float(np.exp(log_a)), "b": float(b)}


def project(rows: list[dict[str, Any]], n: float, workers: int) -> dict[str, Any]:
    """Each stage's fitted time at `n` documents; per-drop stages divided among `workers`."""
    docs = [r["docs"] for r in rows]
    out: dict[str, Any] = {}
    total = 0.0
    for name, _, is_per_drop, _ in STAGES:
        fit = growth(docs, [r["stages"][name]["step_seconds"] for r in rows])
        if fit is None:
            continue
        seconds = fit["a"] * n ** fit["b"] / (workers if is_per_drop else 1)
        out[name] = round(seconds / 3600, 2)
        total += seconds
    return {"documents": n, "workers": workers, "hours_by_stage": out, "hours_total": round(total / 3600, 1)}


def _size_in_child(args: argparse.Namespace, n_docs: int, work: Path) -> dict[str, Any]:
    """One size in a fresh interpreter: its own environment (home), instance and step processes."""
    argv = [sys.executable, "-m", "climb_dagster.bench", "scale", "--one-size", str(n_docs), "--workdir", str(work)]
    for name in ("drop_size", "workers", "rounds", "proxy_steps", "start_method", "seed", "embedder"):
        argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.keep:
        argv.append("--keep")
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench scale at {n_docs} documents failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.embedder != "hashing":
        raise SystemExit("--embedder: only 'hashing' (see the module docstring)")
    if args.one_size is not None:
        return _size(args, args.one_size, Path(args.workdir))
    sizes = [int(float(x)) for x in args.docs.split(",") if x]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="climb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = [_size_in_child(args, n, work) for n in sizes]
    docs = [r["docs"] for r in rows]
    exponents = {}
    for name, _, is_per_drop, _ in STAGES:
        t = growth(docs, [r["stages"][name]["step_seconds"] for r in rows])
        m = growth(docs, [r["stages"][name]["peak_rss_mib"] or 0 for r in rows])
        exponents[name] = {
            "per_drop": is_per_drop,
            "time": round(t["b"], 3) if t else None,
            "peak_rss": round(m["b"], 3) if m else None,
            "peak_rss_ratio_largest_to_smallest": round(
                rows[-1]["stages"][name]["peak_rss_mib"] / rows[0]["stages"][name]["peak_rss_mib"], 3
            )
            if len(rows) > 1 and rows[0]["stages"][name]["peak_rss_mib"] and rows[-1]["stages"][name]["peak_rss_mib"]
            else None,
        }
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "scale",
        "machine": machine(),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip(),
        "drop_size": args.drop_size,
        "embedder": args.embedder,
        "workers": args.workers,
        "start_method": args.start_method,
        "experiment": {"rounds": args.rounds, "proxy_steps": args.proxy_steps},
        "sizes": rows,
        "growth_exponents": exponents,
        "projection": project(rows, args.project, args.project_workers),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }

"""CLIMB's bootstrapping rounds as assets built by a factory: per round k (experiments partitions)
round_k_mixtures -> round_k_proxy_evaluations (one mapped step per proxy) -> round_k_predictor.

Rounds beyond an experiment's own count (regmix/random use one) materialize empty tables and refit the
same predictor, so every experiment has the same asset graph.
"""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import time

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster import schema
from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.core import bootstrap
from climb_dagster.core.artifacts import ModelText
from climb_dagster.core.experiment import ExperimentConfig
from climb_dagster.core.plots import png_markdown, predicted_vs_actual_png, weights_bar_png
from climb_dagster.core.tables import markdown_table
from climb_dagster.k8s import PROXY_OP_TAGS
from climb_dagster.partitions import experiments
from climb_dagster.resources.experiment_tracking import track_round, try_track
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker

CV_FOLDS = 5


def prior_of(cluster_tokens: dict) -> np.ndarray:
    """Natural mixture: each super-cluster's share of the training tokens."""
    tokens = np.asarray(cluster_tokens["tokens"], dtype=np.float64)
    return tokens / tokens.sum()


def data_key(record: dict) -> str:
    """What besides mixture/config/seed determines a proxy's score: the token store and the target.

    The target enters by content (its fingerprint) and by how it is scored, never by where its files are
    stored, so the same data on another storage root or under another experiment name reuses cached proxies.
    """
    from climb_dagster.core.proxy.config import content_hash

    spec = record["target_spec"]
    scoring = {
        "direction": spec["direction"],
        "evaluators": [{k: v for k, v in e.items() if k != "path"} for e in spec["evaluators"]],
    }
    return f"{record['token_store']}:{spec['fingerprint']}:{content_hash(scoring)}"


RECORD_EXTRAS = ("token_store", "token_store_path", "target_spec", "config_hash")


def experiment_config(record: dict) -> ExperimentConfig:
    """The ExperimentConfig of a stored record (which also carries derived fields)."""
    return ExperimentConfig.from_dict({k: v for k, v in record.items() if k not in RECORD_EXTRAS})


def _doremi_proposal(cluster_tokens: dict, prior: np.ndarray, proxy, seed: int, storage: ClimbStorage):
    """DoReMi trains its reference and DRO proxies here (cached under proxy_runs/doremi-<hash>)."""
    from climb_dagster.core.proxy.doremi import doremi_round
    from climb_dagster.core.target_eval import open_token_store

    store = open_token_store(cluster_tokens["path"], storage.options())
    return doremi_round(store, prior, proxy, seed, storage.root() / "proxy_runs")


def load_predictor(model: ModelText):
    from climb_dagster.core.search.predictor import Predictor

    return Predictor.from_strings(list(model.texts), model.metadata["sidecar"])


def _history_for_proposal(evals: list[pl.DataFrame], direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Every evaluated mixture (failed ones included, so none is proposed again) with its score; a failed
    proxy gets the worst score seen, which keeps local search away from it."""
    frames = [f for f in evals if f.height]
    if not frames:
        return None, None
    rows = pl.concat(frames, how="diagonal_relaxed")
    scores = rows[schema.SCORE].to_numpy().astype(np.float64)
    ok = np.isfinite(scores) & (rows["status"] == "ok").to_numpy()
    if ok.any():
        worst = scores[ok].max() if direction == "minimize" else scores[ok].min()
        scores = np.where(ok, scores, worst)
    return bootstrap.table_mixtures(rows), scores


def build_round(k: int) -> list:
    """The three assets and checks of round k (1-based)."""
    group = f"round_{k}"
    prev_evals = [f"round_{j}_proxy_evaluations" for j in range(1, k)]
    ins = {"experiment": dg.AssetIn("experiment"), "cluster_tokens": dg.AssetIn("cluster_tokens")}
    ins |= {name: dg.AssetIn(name) for name in prev_evals}
    if k > 1:
        ins["predictor"] = dg.AssetIn(f"round_{k - 1}_predictor")

    mix_checks = [
        dg.AssetCheckSpec("weights_valid", asset=f"round_{k}_mixtures", blocking=True),
        dg.AssetCheckSpec("budget_respected", asset=f"round_{k}_mixtures", blocking=True),
    ]

    @dg.asset(
        name=f"round_{k}_mixtures",
        partitions_def=experiments,
        group_name=group,
        ins=ins,
        kinds={"parquet"},
        check_specs=mix_checks,
    )
    def mixtures(context: dg.AssetExecutionContext, storage: ClimbStorage, **upstream):
        """Mixtures to train proxies on in this round (round 1: Dirichlet around the token shares)."""
        from climb_dagster.core.proxy.config import ProxyConfig, proxy_run_key
        from climb_dagster.core.search.strategies import propose_round

        record = upstream["experiment"]
        exp = experiment_config(record)
        prior = prior_of(upstream["cluster_tokens"])
        if k > exp.n_rounds:
            empty = bootstrap.mixtures_table(k, np.zeros((0, prior.size)), [])
            yield dg.Output(empty, metadata={"active": False, "dagster/row_count": 0})
            yield from _mixture_checks(empty, 0, prior.size)
            return
        hm, hs = _history_for_proposal([upstream[n] for n in prev_evals], exp.target.direction)
        predictor = load_predictor(upstream["predictor"]) if k > 1 and exp.strategy == "climb" else None
        start = time.perf_counter()
        proxy = ProxyConfig.from_dict(record["proxy"])
        extra: dict = {}
        if exp.strategy == "doremi":
            proposed, extra = _doremi_proposal(upstream["cluster_tokens"], prior, proxy, exp.seed, storage)
        else:
            proposed = propose_round(
                exp.strategy_config(), k - 1, hm, hs, prior, exp.seed, predictor=predictor
            )
        keys = [proxy_run_key(m.tolist(), proxy, exp.seed, data_key(record)) for m in proposed]
        table = bootstrap.mixtures_table(k, proposed, keys)
        png = weights_bar_png(proposed, f"{record['name']} round {k}: weights")
        yield dg.Output(
            table,
            metadata={
                "active": True,
                "dagster/row_count": table.height,
                **extra,
                "seconds": round(time.perf_counter() - start, 3),
                "mixtures": dg.MetadataValue.md(markdown_table(table, max_rows=20, decimals=3)),
                "weights_plot": dg.MetadataValue.md(png_markdown(png, "weights")),
            },
        )
        yield from _mixture_checks(table, exp.rounds[k - 1], prior.size)

    @dg.op(name=f"round_{k}_plan_proxies", out=dg.DynamicOut(dict))
    def plan(mixtures_table: pl.DataFrame):
        weights = bootstrap.table_mixtures(mixtures_table) if mixtures_table.height else np.zeros((0, 0))
        for row, w in zip(mixtures_table.iter_rows(named=True), weights, strict=True):
            job = {
                schema.MIXTURE_ID: row[schema.MIXTURE_ID],
                "proxy_key": row["proxy_key"],
                "weights": w.tolist(),
            }
            yield dg.DynamicOutput(job, mapping_key=row[schema.MIXTURE_ID].replace("-", "_"))

    @dg.op(name=f"round_{k}_train_proxy", tags=PROXY_OP_TAGS)
    def train(
        context: dg.OpExecutionContext, storage: ClimbStorage, record: dict, tokens: dict, job: dict
    ) -> dict:
        """Train one proxy on one mixture (reused from the cache when this exact run already finished)."""
        from climb_dagster.core.proxy.config import ProxyConfig
        from climb_dagster.core.target_eval import open_token_store, target_evaluator

        proxy = ProxyConfig.from_dict(record["proxy"])
        store = open_token_store(tokens["path"], storage.options())
        evaluate = target_evaluator(
            record["target_spec"], store.load_tokenizer(), proxy.train.num_threads, storage.options()
        )
        cache = bootstrap.ProxyCache(storage.root() / "proxy_runs")

        def progress(step: int, total: int, loss: float) -> None:
            context.log.debug(f"{job[schema.MIXTURE_ID]}: step {step}/{total} loss {loss:.3f}")

        result = bootstrap.run_proxy_job(job, store, proxy, int(record["seed"]), evaluate, cache, progress)
        verb = "reused" if result["cached"] else "trained"
        context.log.info(
            f"{verb} proxy {job[schema.MIXTURE_ID]} ({result['status']}): score {result[schema.SCORE]}"
        )
        return result

    @dg.op(name=f"round_{k}_collect_proxies")
    def collect(context: dg.OpExecutionContext, tokens: dict, results: list) -> pl.DataFrame:
        table = bootstrap.evaluations_table(results, len(tokens["tokens"]))
        failed = table.filter(pl.col("status") != "ok")
        for row in failed.iter_rows(named=True):
            context.log.warning(f"proxy {row[schema.MIXTURE_ID]} failed and is excluded: {row['reason']}")
        context.add_output_metadata(
            {
                "dagster/row_count": table.height,
                "failed": failed.height,
                "reused_from_cache": int(table["cached"].sum()) if table.height else 0,
                "train_seconds": float(table["wall_s"].sum()) if table.height else 0.0,
                "evaluations": dg.MetadataValue.md(
                    markdown_table(
                        table.select(schema.MIXTURE_ID, "status", schema.SCORE, "train_loss", "cached")
                    )
                ),
            }
        )
        return table

    @dg.graph_asset(
        name=f"round_{k}_proxy_evaluations",
        partitions_def=experiments,
        group_name=group,
        ins={
            "mixtures_table": dg.AssetIn(f"round_{k}_mixtures"),
            "record": dg.AssetIn("experiment"),
            "tokens": dg.AssetIn("cluster_tokens"),
        },
    )
    def evaluations(mixtures_table, record, tokens):
        """Proxy LM trained on each mixture and scored on the target (one step per proxy)."""
        results = plan(mixtures_table).map(lambda job: train(record, tokens, job))
        return collect(tokens, results.collect())

    pred_ins = {"experiment": dg.AssetIn("experiment")}
    pred_ins |= {
        f"round_{j}_proxy_evaluations": dg.AssetIn(f"round_{j}_proxy_evaluations") for j in range(1, k + 1)
    }

    @dg.asset(
        name=f"round_{k}_predictor",
        partitions_def=experiments,
        group_name=group,
        ins=pred_ins,
        kinds={"lightgbm", "mlflow"},
        check_specs=[
            dg.AssetCheckSpec("evaluations_scores_finite", asset=f"round_{k}_predictor", blocking=True)
        ],
    )
    def predictor(context: dg.AssetExecutionContext, tracker: MlflowTracker, **upstream):
        """LightGBM predictor fitted on every proxy evaluated so far (LightGBM text + CV Spearman)."""
        from climb_dagster.core.search.predictor import fit_predictor
        from climb_dagster.core.search.strategies import round_seed

        record = upstream["experiment"]
        strategy = experiment_config(record).strategy_config()
        direction = record_direction(record)
        evals = [upstream[f"round_{j}_proxy_evaluations"] for j in range(1, k + 1)]
        bad = _unexplained_scores(evals)
        if bad:
            yield dg.AssetCheckResult(
                check_name="evaluations_scores_finite", passed=False, metadata={"rows": ", ".join(bad)}
            )
            raise dg.Failure(f"round {k}: evaluations with a non-finite score not marked failed: {bad}")
        hm, hs, spent = bootstrap.history(evals)
        if hs.size < 2:
            raise dg.Failure(
                f"round {k} of {record['name']}: only {hs.size} successful proxies; cannot fit a predictor"
            )
        folds = min(CV_FOLDS, hs.size) if hs.size >= 4 else 0
        start = time.perf_counter()
        # The same predictor config and seed as the search's own round (run_search), so both agree.
        fitted = fit_predictor(
            hm, hs, direction, round_seed(int(record["seed"]), k), strategy.predictor, cv_folds=folds
        )
        texts, sidecar = fitted.to_strings()
        cv = fitted.metadata.get("cv_spearman")
        in_sample = fitted.predict(hm)
        best_i = int(np.argmin(hs) if direction == "minimize" else np.argmax(hs))
        summary = {
            "best_observed_score": float(hs[best_i]),
            "cv_spearman": None if cv is None or not np.isfinite(cv) else float(cv),
            "predicted_best": float(in_sample[fitted.best(hm)]),
            "n_successful": int(hs.size),
            "n_spent": int(spent),
        }
        scatter = predicted_vs_actual_png(in_sample, hs, f"{record['name']} round {k}: in-sample fit")
        this_round = evals[-1]
        active = this_round.height > 0
        tracking = {}
        if active:
            bars = weights_bar_png(bootstrap.table_mixtures(this_round), f"round {k} weights")
            tracking = try_track(
                context.log.warning,
                f"MLflow round {k}",
                lambda: track_round(
                    tracker,
                    record,
                    k,
                    this_round,
                    summary,
                    texts[0],
                    {f"round_{k}_weights.png": bars, f"round_{k}_predicted_vs_actual.png": scatter},
                ),
            )
        model = ModelText(tuple(texts), {"sidecar": sidecar, **{k_: v for k_, v in summary.items()}})
        yield dg.Output(
            model,
            metadata={
                **{k_: v for k_, v in summary.items() if v is not None},
                "fit_seconds": round(time.perf_counter() - start, 3),
                "predicted_vs_actual": dg.MetadataValue.md(png_markdown(scatter, "predicted vs actual")),
                **tracking,
            },
        )
        yield dg.AssetCheckResult(check_name="evaluations_scores_finite", passed=True)

    return [mixtures, evaluations, predictor]


def _mixture_checks(table: pl.DataFrame, planned: int, n_clusters: int):
    """weights_valid: finite, >= 0, rows sum to 1 over all super-clusters; budget_respected: row count."""
    w = bootstrap.table_mixtures(table) if table.height else np.zeros((0, n_clusters))
    sums = w.sum(axis=1)
    valid = bool(
        w.shape[1] == n_clusters
        and np.isfinite(w).all()
        and (w >= 0).all()
        and np.allclose(sums, 1, atol=1e-6)
    )
    yield dg.AssetCheckResult(
        check_name="weights_valid",
        passed=valid,
        metadata={
            "n_clusters": w.shape[1],
            "max_abs_sum_error": float(np.abs(sums - 1).max()) if w.size else 0.0,
        },
    )
    yield dg.AssetCheckResult(
        check_name="budget_respected",
        passed=table.height == planned,
        metadata={"rows": table.height, "planned": planned},
    )


def _unexplained_scores(evals: list[pl.DataFrame]) -> list[str]:
    """Mixture ids whose score is NaN/inf/missing while the row claims success, or failed without a reason."""
    bad = []
    for frame in evals:
        for row in frame.iter_rows(named=True):
            score = row[schema.SCORE]
            finite = score is not None and np.isfinite(score)
            if (row["status"] == "ok" and not finite) or (row["status"] != "ok" and not row["reason"]):
                bad.append(row[schema.MIXTURE_ID])
    return bad


def record_direction(record: dict) -> str:
    return record["target_spec"]["direction"]


ROUND_ASSETS = [a for k in range(1, MAX_ROUNDS + 1) for a in build_round(k)]

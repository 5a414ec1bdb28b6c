"""The experiment's answer: the final mixture, and its export for training frameworks."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import io
import json

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster import schema
from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.assets.rounds import experiment_config, load_predictor, prior_of, record_direction
from climb_dagster.core import bootstrap
from climb_dagster.core import storage as files
from climb_dagster.core.plots import png_markdown, weights_bar_png
from climb_dagster.core.tables import markdown_table
from climb_dagster.partitions import experiments
from climb_dagster.resources.experiment_tracking import track_final, try_track
from climb_dagster.resources.io_manager import LAZY
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker

EVAL_KEYS = [f"round_{j}_proxy_evaluations" for j in range(1, MAX_ROUNDS + 1)]


@dg.asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        "experiment": dg.AssetIn("experiment"),
        "cluster_tokens": dg.AssetIn("cluster_tokens"),
        "predictor": dg.AssetIn(f"round_{MAX_ROUNDS}_predictor"),
        **{key: dg.AssetIn(key) for key in EVAL_KEYS},
    },
    kinds={"json", "mlflow"},
)
def final_mixture(context: dg.AssetExecutionContext, tracker: MlflowTracker, **upstream) -> dg.Output[dict]:
    """The selected mixture over super-clusters, beside the natural token-share mixture."""
    from climb_dagster.core.search.strategies import select_final

    record, predictor_text = upstream["experiment"], upstream["predictor"]
    exp = experiment_config(record)
    prior = prior_of(upstream["cluster_tokens"])
    evals = [upstream[key] for key in EVAL_KEYS]
    hm, hs, spent = bootstrap.history(evals)
    predictor = load_predictor(predictor_text)
    weights = select_final(exp.strategy_config(), predictor, hm, hs, exp.seed, prior=prior)
    direction = record_direction(record)
    best_i = int(np.argmin(hs) if direction == "minimize" else np.argmax(hs))
    uniform = np.full(prior.size, 1.0 / prior.size)
    predicted = predictor.predict(np.vstack([weights, prior, uniform]))
    final = {
        "experiment": record["name"],
        "strategy": record["strategy"],
        "direction": direction,
        "weights": [float(w) for w in weights],
        "natural": [float(w) for w in prior],
        "predicted_score": float(predicted[0]),
        "predicted_natural_score": float(predicted[1]),
        "predicted_uniform_score": float(predicted[2]),
        "best_observed_score": float(hs[best_i]),
        "proxies_trained": int(spent) + exp.extra_proxies,
        "proxies_successful": int(hs.size),
        "config_hash": record["config_hash"],
    }
    table = pl.DataFrame(
        {"super_cluster": list(range(prior.size)), "final": weights.round(4), "natural": prior.round(4)}
    )
    png = weights_bar_png(np.vstack([weights]), f"{record['name']}: final mixture")
    tracking = try_track(
        context.log.warning, "MLflow final mixture", lambda: track_final(tracker, record, final)
    )
    return dg.Output(
        final,
        metadata={
            "predicted_score": final["predicted_score"],
            "predicted_natural_score": final["predicted_natural_score"],
            "best_observed_score": final["best_observed_score"],
            "proxies_trained": final["proxies_trained"],
            "final_vs_natural": dg.MetadataValue.md(markdown_table(table)),
            "final_plot": dg.MetadataValue.md(png_markdown(png, "final mixture")),
            **tracking,
        },
    )


class MixtureExportConfig(dg.Config):
    # 0 = as many tokens as the kept corpus holds (the mixture re-weights it; small clusters repeat).
    token_budget: int = 0
    # Repeat no super-cluster more than this many times; its surplus weight is then not met (say so).
    max_repeat: float = 4.0
    shard_rows: int = 5_000
    seed: int = 0


@dg.asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        # Every crawl drop feeds every experiment's export.
        "raw_documents": dg.AssetIn(metadata={LAZY: True}, partition_mapping=dg.AllPartitionMapping()),
        "cluster_assignments": dg.AssetIn(metadata={LAZY: True}, partition_mapping=dg.AllPartitionMapping()),
    },
    kinds={"parquet", "json"},
)
def mixture_export(
    context: dg.AssetExecutionContext,
    config: MixtureExportConfig,
    storage: ClimbStorage,
    final_mixture: dict,
    cluster_tokens: dict,
    proxy_tokenizer: dict,
    super_clusters: pl.DataFrame,
    super_cluster_stats: pl.DataFrame,
    raw_documents: dict,
    cluster_assignments: dict,
) -> dg.Output[dict]:
    """Blend weights (JSON, Megatron/NeMo --data-path, HF interleave) and a sampled training set
    at a token budget, as Parquet shards with a manifest (like ClimbMix)."""
    from climb_dagster.core import export
    from climb_dagster.core.proxy.tokens import load_tokenizer

    name = context.partition_key
    weights = np.asarray(final_mixture["weights"])
    n_super = weights.size
    names = [f"super_cluster_{i:03d}" for i in range(n_super)]
    prefixes = [f"{cluster_tokens['path']}/cluster_{i:03d}" for i in range(n_super)]
    blend = export.blend_formats(weights, names, prefixes)
    budget = config.token_budget or int(sum(cluster_tokens["tokens"]))
    rates = export.repeat_rates(weights, cluster_tokens["tokens"], budget)
    capped = rates > config.max_repeat
    if capped.any():
        context.log.warning(
            f"super-clusters {np.flatnonzero(capped).tolist()} would repeat up to {rates.max():.1f}x to meet the "
            f"budget of {budget} tokens; capped at {config.max_repeat}x (raise max_repeat or lower token_budget)"
        )
        rates = np.minimum(rates, config.max_repeat)
    tokenizer = load_tokenizer(
        files.local_dir_copy(files.make_path(proxy_tokenizer["path"], storage.options()))
    )
    out = storage.root() / "exports" / name
    mapping = super_clusters.select(schema.CLUSTER, schema.SUPER_CLUSTER)
    shards, buffer, got = [], [], np.zeros(n_super, dtype=np.int64)

    def flush() -> None:
        if not buffer:
            return
        frame = pl.concat(buffer)
        buffer.clear()
        shard = out / f"train-{len(shards):05d}.parquet"
        blob = io.BytesIO()
        frame.write_parquet(blob, compression="zstd")
        files.atomic_write_bytes(shard, blob.getvalue())
        shards.append({"file": shard.name, "rows": frame.height, "tokens": int(frame[schema.N_TOKENS].sum())})

    for key in sorted(raw_documents):
        docs = raw_documents[key].load().select(schema.ID, schema.TEXT)
        joined = (
            docs.join(cluster_assignments[key].load().select(schema.ID, schema.CLUSTER), on=schema.ID)
            .join(mapping, on=schema.CLUSTER)
            .drop(schema.CLUSTER)
            .sort(schema.ID)
        )
        encoded = tokenizer.backend_tokenizer.encode_batch_fast(
            joined[schema.TEXT].to_list(), add_special_tokens=False
        )
        joined = joined.with_columns(
            pl.Series(schema.N_TOKENS, [len(e.ids) + 1 for e in encoded], dtype=pl.Int64)
        )
        sampled = export.sample_documents(joined, rates, config.seed)
        np.add.at(got, sampled[schema.SUPER_CLUSTER].to_numpy(), sampled[schema.N_TOKENS].to_numpy())
        for start in range(0, sampled.height, config.shard_rows):
            buffer.append(sampled.slice(start, config.shard_rows))
            if sum(b.height for b in buffer) >= config.shard_rows:
                flush()
    flush()
    titles = super_cluster_stats.select(schema.SUPER_CLUSTER, pl.exclude(schema.SUPER_CLUSTER)).to_dicts()
    manifest = {
        "experiment": name,
        "token_budget": budget,
        "max_repeat": config.max_repeat,
        "tokens_sampled": int(got.sum()),
        "tokens_per_super_cluster": got.tolist(),
        "repeat_rates": [round(float(r), 6) for r in rates],
        "shards": shards,
        "blend": blend,
        "super_clusters": titles,
        "seed": config.seed,
        "final_mixture": final_mixture,
    }
    files.atomic_write_text(out / "blend.json", json.dumps(blend, indent=1))
    # The manifest last: its presence marks the export as complete.
    files.atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, default=str))
    table = pl.DataFrame(
        {
            "super_cluster": list(range(n_super)),
            "weight": weights.round(4),
            "target_tokens": (weights * budget).round().astype(np.int64),
            "sampled_tokens": got,
            "repeat_rate": rates.round(3),
        }
    )
    return dg.Output(
        {
            "path": str(out),
            "shards": [s["file"] for s in shards],
            "tokens_sampled": int(got.sum()),
            "blend": blend,
        },
        metadata={
            "tokens_sampled": int(got.sum()),
            "shards": len(shards),
            "export_path": dg.MetadataValue.path(str(out)),
            "megatron_data_path": blend["megatron_data_path"],
            "per_super_cluster": dg.MetadataValue.md(markdown_table(table)),
        },
    )

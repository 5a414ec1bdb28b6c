"""document_embeddings: one drop's documents embedded (per crawl-drop partition)."""

from typing import Any

import dagster as dg
import polars as pl

from climb_dagster.assets.clustering.common import GROUP
from climb_dagster.core.clustering.kmeans import (
    nonfinite_rows,
)
from climb_dagster.core.common import schema
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.embedding.encoder import scratch_rows
from climb_dagster.core.io.settings import Settings
from climb_dagster.k8s import EMBEDDING_OP_TAGS
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.embedding import EmbeddingModelResource


@dg.asset(
    partitions_def=crawl_drops,
    group_name=GROUP,
    kinds={"pytorch", "numpy"},
    op_tags=EMBEDDING_OP_TAGS,
    check_specs=[
        dg.AssetCheckSpec(
            "embeddings_finite",
            asset="document_embeddings",
            blocking=True,
            description="No NaN or infinite value in any embedding, and one row per document of the drop.",
        )
    ],
)
def document_embeddings(
    context: dg.AssetExecutionContext, raw_documents: pl.DataFrame, embedder: EmbeddingModelResource
):
    """One float32 row per document of the drop (sentence-transformers pooling, normalised)."""
    timer = Timer()
    model = embedder.load()
    load_s = timer.seconds
    key = context.partition_key
    context.log.info(
        f"drop {key}: embedding {raw_documents.height} documents with {model.spec.path.name} "
        f"on {model.device} ({model.precision}, max {model.max_length} tokens)"
    )
    last: list[Any] = []

    def report(progress: Any) -> None:
        last[:] = [progress]
        context.log.info(f"drop {key}: {progress}")


    # Rows go to an unlinked scratch file chunk by chunk (bounded memory for large drops); the IO manager
    # then streams that file to storage.
    rows = scratch_rows(Settings.from_env().local_cache_dir(), raw_documents.height, model.dimension)
    emb = model.embed(raw_documents.get_column(schema.TEXT).to_list(), progress=report, out=rows)
    p = last[0] if last else None
    yield dg.Output(
        emb,
        metadata={
            "dagster/row_count": int(emb.shape[0]),
            "dimension": int(emb.shape[1]),
            "model": str(model.spec.path),
            "device": model.device,
            "precision": model.precision,
            "max_length": model.max_length,
            "token_budget": model.token_budget,
            "max_batch_size": model.max_batch_size,
            "load_seconds": round(load_s, 3),
            "embed_seconds": round(p.elapsed_s, 3) if p else 0.0,
            "docs_per_s": round(p.docs_per_s, 1) if p else 0.0,
            "tokens_per_s": round(p.tokens_per_s, 1) if p else 0.0,
            "tokens": int(p.tokens_done) if p else 0,
        },
    )
    bad = nonfinite_rows(emb)
    yield dg.AssetCheckResult(
        check_name="embeddings_finite",
        passed=bad == 0 and emb.shape[0] == raw_documents.height,
        metadata={"rows": int(emb.shape[0]), "documents": raw_documents.height, "nonfinite_rows": bad},
    )

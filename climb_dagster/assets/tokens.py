"""Proxy-LM data: a BPE tokenizer trained on a bounded sample of the corpus, each drop tokenized once in its own
step (drop_tokens, per crawl-drop partition), and a small index that combines the drops into one token stream
per super-cluster (cluster_tokens) that proxy runs sample windows from.

Which steps grow with what: proxy_tokenizer reads at most `max_drops` drops and `max_docs` documents; drop_tokens
holds one drop; cluster_tokens reads each drop's document table (ids, token counts) one at a time and writes an
index bounded by the per-super-cluster cap. A new drop tokenizes only itself; a refit, re-prune or re-merge
re-indexes without tokenizing anything."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import hashlib
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.metadata import step_memory
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.common import schema
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.experiment.records import DropTokensRef, TokenizerRef, TokenStoreRef
from climb_dagster.core.io import storage as files
from climb_dagster.core.io.unique_ids import DropIds, check_unique_ids, id_hashes
from climb_dagster.core.proxy.drop_store import (
    DOCS_FILE,
    HASHES_FILE,
    META_FILES,
    DropStore,
    drop_store_summary,
    write_drop_store,
)
from climb_dagster.core.proxy.drop_store import DropTokensConfig as DropStoreConfig
from climb_dagster.core.proxy.segment_index import (
    DEFAULT_MAX_TOKENS_PER_SUPER_CLUSTER,
    StoreDrop,
    write_segmented_store,
)
from climb_dagster.core.proxy.tokens import TOKENIZER_FILE, train_tokenizer
from climb_dagster.k8s import DROP_OP_TAGS
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.io_manager import LAZY
from climb_dagster.resources.storage import ClimbStorage

GROUP = "proxy_data"
LAZY_IN = {LAZY: True}


class ProxyTokenizerConfig(dg.Config):
    vocab_size: int = Field(
        default=4096, description="Vocabulary size of the proxies' byte-level BPE tokenizer."
    )
    max_docs: int = Field(
        default=20_000, description="Documents in the seeded training sample (drawn over all drops)."
    )
    max_doc_chars: int = Field(
        default=4_000, description="Characters of each sampled document the tokenizer sees."
    )
    max_drops: int = Field(
        default=32, description="Drops the sample is drawn from, at most (a seeded choice when there are more)."
    )
    seed: int = Field(default=0, description="Seed of the document sample (and of the choice of drops).")


def _texts(raw_documents: dict, max_drops: int, seed: int):
    """Texts of at most `max_drops` drops (all of them, in key order, when there are no more than that)."""
    keys = sorted(raw_documents)
    if len(keys) > max_drops:
        rng = np.random.default_rng(seed)
        keys = sorted(rng.choice(keys, size=max_drops, replace=False).tolist())
    for key in keys:
        yield from raw_documents[key].load().get_column(schema.TEXT)


@dg.asset(group_name=GROUP, ins={"raw_documents": dg.AssetIn(metadata=LAZY_IN)}, kinds={"huggingface"})
def proxy_tokenizer(
    config: ProxyTokenizerConfig, storage: ClimbStorage, raw_documents: dict
) -> dg.Output[TokenizerRef]:
    """Byte-level BPE tokenizer for the proxy LMs, trained on a bounded seeded sample of the drops."""

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        out = train_tokenizer(
            _texts(raw_documents, config.max_drops, config.seed),
            Path(tmp) / "tokenizer",
            config.vocab_size,
            config.seed,
            config.max_docs,
            config.max_doc_chars,
        )
        sha = hashlib.sha256((out / TOKENIZER_FILE).read_bytes()).hexdigest()[:16]
        target = storage.root() / "proxy_tokenizer" / sha
        files.upload_dir(out, target, kind="tokenizer")
    return dg.Output(
        TokenizerRef(str(target), sha, config.vocab_size),
        metadata={
            "vocab_size": config.vocab_size,
            "tokenizer_dir": dg.MetadataValue.path(str(target)),
            "seconds": timer.rounded(2),
        },
    )


class DropTokensConfig(dg.Config):
    """The fields of core.proxy.drop_store.DropTokensConfig (validated there)."""

    max_stored_tokens: int = Field(
        default=DropStoreConfig.max_stored_tokens,
        description="Token ids kept per drop for the proxies (whole documents in a seeded hash order); every "
        "document is still counted for the natural mixture and the export.",
    )
    seed: int = Field(default=DropStoreConfig.seed, description="Seed of the hash order.")


@dg.asset(
    partitions_def=crawl_drops,
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    op_tags=DROP_OP_TAGS,
)
def drop_tokens(
    context: dg.AssetExecutionContext,
    config: DropTokensConfig,
    storage: ClimbStorage,
    proxy_tokenizer: TokenizerRef,
    raw_documents: pl.DataFrame,
) -> dg.Output[DropTokensRef]:
    """One drop tokenized once: every document's token count, and the token ids of a bounded sample."""
    key = context.partition_key
    timer = Timer()
    settings = core_config(DropStoreConfig, config)
    tokenizer_dir = files.local_dir_copy(files.make_path(proxy_tokenizer.path, storage.options()), kind="tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        store = write_drop_store(key, raw_documents, tokenizer_dir, Path(tmp) / "store", settings)
        content = content_hash({"tok": store.tokenizer_sha256, "tokens": store.sha256, "docs": _docs_digest(store)})
        target = storage.root() / "drop_tokens" / key / content
        files.upload_dir(store.path, target, kind="token_store")
    summary = drop_store_summary(store)
    ref = DropTokensRef(
        drop=key,
        path=str(target),
        sha256=store.sha256,
        documents=summary["documents"],
        tokens=summary["tokens"],
        stored_documents=summary["stored_documents"],
        stored_tokens=summary["stored_tokens"],
    )
    seconds = timer.seconds
    return dg.Output(
        ref,
        metadata={
            "documents": ref.documents,
            "tokens": ref.tokens,
            "stored_documents": ref.stored_documents,
            "stored_tokens": ref.stored_tokens,
            "docs_per_s": round(ref.documents / max(seconds, 1e-9)),
            "seconds": round(seconds, 2),
            **step_memory(),
            "drop_tokens_dir": dg.MetadataValue.path(str(target)),
        },
    )


def _docs_digest(store: DropStore) -> str:
    digest = hashlib.sha256()
    for name in (DOCS_FILE, HASHES_FILE):
        digest.update((store.path / name).read_bytes())
    return digest.hexdigest()


class ClusterTokensConfig(dg.Config):
    max_tokens_per_super_cluster: int = Field(
        default=DEFAULT_MAX_TOKENS_PER_SUPER_CLUSTER,
        description="Stored tokens indexed per super-cluster, at most (a seeded uniform sample of its documents "
        "beyond that): bounds what proxies read and the index's size.",
    )
    seed: int = Field(default=0, description="Seed of the per-super-cluster sample.")


def _drop_meta(ref: DropTokensRef, options: dict) -> DropStore:
    """A drop's store without its token file (local folders are read in place; remote ones fetched in part)."""
    folder = files.local_files_copy(files.make_path(ref.path, options), META_FILES)
    return DropStore.open(folder, with_tokens=False)


def _ids_for(store: DropStore):
    def ids_for(hashes: np.ndarray) -> list[str]:
        ids = store.docs([schema.ID]).get_column(schema.ID).to_list()
        wanted = set(hashes.tolist())
        return [i for i, h in zip(ids, id_hashes(ids).tolist(), strict=True) if h in wanted]

    return ids_for


@dg.asset(
    group_name=GROUP,
    ins={
        "drop_tokens": dg.AssetIn(metadata=LAZY_IN),
        "cluster_assignments": dg.AssetIn(metadata=LAZY_IN),
    },
    kinds={"numpy"},
)
def cluster_tokens(
    context: dg.AssetExecutionContext,
    config: ClusterTokensConfig,
    storage: ClimbStorage,
    proxy_tokenizer: TokenizerRef,
    super_clusters: pl.DataFrame,
    super_cluster_stats: pl.DataFrame,
    drop_tokens: dict,
    cluster_assignments: dict,
) -> dg.Output[TokenStoreRef]:
    """The token store: each super-cluster a stream of segments over the drops' token files (an index, no
    tokenizing), after a cross-drop duplicate-id check in bounded memory."""
    timer = Timer()
    options = storage.options()
    missing = sorted(set(cluster_assignments) - set(drop_tokens))
    if missing:
        raise dg.Failure(
            f"drops {missing} have cluster assignments but no drop_tokens: materialize drop_tokens for them "
            "(proxy_data_job, one run per drop)"
        )
    n_super = int(super_clusters[schema.SUPER_CLUSTER].max()) + 1
    refs = {key: drop_tokens[key].load() for key in sorted(cluster_assignments)}
    metas = {key: _drop_meta(ref, options) for key, ref in refs.items()}
    buckets = check_unique_ids(
        [DropIds(key, store.id_hashes(), _ids_for(store)) for key, store in metas.items()]
    )
    drops = [
        StoreDrop(key, refs[key].path, metas[key], cluster_assignments[key].load)
        for key in sorted(metas)
    ]
    tokenizer_dir = files.local_dir_copy(files.make_path(proxy_tokenizer.path, options), kind="tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        index = write_segmented_store(
            drops,
            super_clusters,
            tokenizer_dir,
            Path(tmp) / "store",
            n_super,
            config.max_tokens_per_super_cluster,
            config.seed,
            log=context.log.info,
        )
        target = storage.root() / "cluster_tokens" / index.key
        files.upload_dir(index.path, target, kind="token_store")
    seconds = timer.seconds
    ref = TokenStoreRef(
        str(target),
        index.key,
        index.vocab_size,
        index.corpus_tokens,
        index.corpus_docs,
        index.n_tokens if index.n_tokens != index.corpus_tokens else (),
    )
    # Named like everywhere else, with each super-cluster's token share (the natural mixture, round 1's prior).
    table = pl.DataFrame(
        {
            schema.SUPER_CLUSTER: supercluster_labels(super_cluster_stats, n_super),
            schema.DOCUMENTS: list(index.corpus_docs),
            schema.TOKENS: list(index.corpus_tokens),
            "stored_tokens": list(index.n_tokens),
            "token_share": [round(float(share), 4) for share in ref.prior()],
        }
    )
    if index.capped:
        context.log.info(
            f"super-clusters {list(index.capped)} hold more than {config.max_tokens_per_super_cluster} stored "
            "tokens: a seeded sample of their documents is indexed"
        )
    return dg.Output(
        ref,
        metadata={
            "total_tokens": int(sum(index.corpus_tokens)),
            "stored_tokens": int(sum(index.n_tokens)),
            "n_superclusters": n_super,
            "drops": len(drops),
            "duplicate_check_buckets": buckets,
            "seconds": round(seconds, 2),
            **step_memory(),
            "per_super_cluster": table_metadata(table, max_rows=1000),
            "token_store_dir": dg.MetadataValue.path(str(target)),
        },
    )


TOKEN_ASSETS = [proxy_tokenizer, drop_tokens, cluster_tokens]

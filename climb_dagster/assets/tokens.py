"""Proxy-LM data: a BPE tokenizer trained on the corpus, and every super-cluster tokenized once into
memory-mapped token files that proxy runs sample windows from."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import hashlib
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.common import schema
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.experiment.records import TokenizerRef, TokenStoreRef
from climb_dagster.core.io import storage as files
from climb_dagster.core.proxy.tokens import TOKENIZER_FILE, train_tokenizer, write_token_store
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
    seed: int = Field(default=0, description="Seed of the document sample.")


def _texts(raw_documents: dict):
    for key in sorted(raw_documents):
        yield from raw_documents[key].load().get_column(schema.TEXT)


@dg.asset(group_name=GROUP, ins={"raw_documents": dg.AssetIn(metadata=LAZY_IN)}, kinds={"huggingface"})
def proxy_tokenizer(
    config: ProxyTokenizerConfig, storage: ClimbStorage, raw_documents: dict
) -> dg.Output[TokenizerRef]:
    """Byte-level BPE tokenizer for the proxy LMs, trained on a bounded seeded sample of all drops."""

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        out = train_tokenizer(
            _texts(raw_documents),
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


@dg.asset(
    group_name=GROUP,
    ins={
        "raw_documents": dg.AssetIn(metadata=LAZY_IN),
        "cluster_assignments": dg.AssetIn(metadata=LAZY_IN),
    },
    kinds={"numpy"},
)
def cluster_tokens(
    context: dg.AssetExecutionContext,
    storage: ClimbStorage,
    proxy_tokenizer: TokenizerRef,
    super_clusters: pl.DataFrame,
    super_cluster_stats: pl.DataFrame,
    raw_documents: dict,
    cluster_assignments: dict,
) -> dg.Output[TokenStoreRef]:
    """Each super-cluster tokenized once into a uint16/uint32 memmap file plus an index."""
    from climb_dagster.core.io.documents import kept_documents, super_cluster_texts

    timer = Timer()
    n_super = int(super_clusters[schema.SUPER_CLUSTER].max()) + 1
    tokenizer_path = files.make_path(proxy_tokenizer.path, storage.options())
    tokenizer_dir = files.local_dir_copy(tokenizer_path, kind="tokenizer")
    # Each drop is read once; an id in two drops is refused on the way. The store is written to a
    # temporary folder, so a refusal part-way leaves nothing behind.
    drops = kept_documents(raw_documents, cluster_assignments, super_clusters, check_ids=True)
    batches = super_cluster_texts(drops, context.log.info)
    with tempfile.TemporaryDirectory() as tmp:
        store = write_token_store(batches, tokenizer_dir, Path(tmp) / "store", n_clusters=n_super)
        key = store.key()
        target = storage.root() / "cluster_tokens" / key
        files.upload_dir(store.path, target, kind="token_store")
        n_tokens, n_docs, vocab = list(store.n_tokens), list(store.n_docs), store.vocab_size
    seconds = timer.seconds
    ref = TokenStoreRef(str(target), key, vocab, tuple(n_tokens), tuple(n_docs))
    # Named like everywhere else, with each super-cluster's token share (the natural mixture, round 1's prior).
    table = pl.DataFrame(
        {
            schema.SUPER_CLUSTER: supercluster_labels(super_cluster_stats, n_super),
            schema.DOCUMENTS: n_docs,
            schema.TOKENS: n_tokens,
            "token_share": [round(float(share), 4) for share in ref.prior()],
        }
    )
    return dg.Output(
        ref,
        metadata={
            "total_tokens": int(sum(n_tokens)),
            "n_superclusters": n_super,
            "tokens_per_s": round(sum(n_tokens) / max(seconds, 1e-9)),
            "seconds": round(seconds, 2),
            "per_super_cluster": table_metadata(table, max_rows=1000),
            "token_store_dir": dg.MetadataValue.path(str(target)),
        },
    )


TOKEN_ASSETS = [proxy_tokenizer, cluster_tokens]

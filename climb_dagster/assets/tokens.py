"""Proxy-LM data: a BPE tokenizer trained on the corpus, and every super-cluster tokenized once into
memory-mapped token files that proxy runs sample windows from."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import hashlib
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from climb_dagster.core import schema
from climb_dagster.core import storage as files
from climb_dagster.core.records import TokenStoreRef
from climb_dagster.core.tables import markdown_table
from climb_dagster.resources.io_manager import LAZY
from climb_dagster.resources.storage import ClimbStorage

GROUP = "proxy_data"
LAZY_IN = {LAZY: True}


class ProxyTokenizerConfig(dg.Config):
    vocab_size: int = 4096
    max_docs: int = 20_000
    max_doc_chars: int = 4_000
    seed: int = 0


def _texts(raw_documents: dict):
    for key in sorted(raw_documents):
        yield from raw_documents[key].load().get_column(schema.TEXT)


@dg.asset(group_name=GROUP, ins={"raw_documents": dg.AssetIn(metadata=LAZY_IN)}, kinds={"huggingface"})
def proxy_tokenizer(
    config: ProxyTokenizerConfig, storage: ClimbStorage, raw_documents: dict
) -> dg.Output[dict]:
    """Byte-level BPE tokenizer for the proxy LMs, trained on a bounded seeded sample of all drops."""
    from climb_dagster.core.proxy.tokens import TOKENIZER_FILE, train_tokenizer

    start = time.perf_counter()
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
        files.upload_dir(out, target)
    return dg.Output(
        {"path": str(target), "sha256": sha, "vocab_size": config.vocab_size},
        metadata={
            "vocab_size": config.vocab_size,
            "path": dg.MetadataValue.path(str(target)),
            "seconds": round(time.perf_counter() - start, 2),
        },
    )


def _cluster_batches(raw_documents: dict, cluster_assignments: dict, mapping: pl.DataFrame, log):
    """(super_cluster, texts) per drop and super-cluster; documents of pruned clusters are left out.

    Each drop is read once, and its ids are checked against the drops before it on the way: an id in two
    drops is refused (each drop alone is checked at ingestion). The store is written to a temporary folder,
    so a refusal part-way leaves nothing behind.
    """
    from climb_dagster.core.errors import ClimbInputError

    first_drop: dict[str, str] = {}
    for key in sorted(raw_documents):
        docs = raw_documents[key].load().select(schema.ID, schema.TEXT)
        for doc_id in docs.get_column(schema.ID).to_list():
            seen = first_drop.setdefault(doc_id, key)
            if seen != key:
                raise ClimbInputError(
                    f"duplicate document id {doc_id!r} in crawl drops {seen!r} and {key!r}: ids must be "
                    "unique across drops (fix or drop one of them, then rematerialize raw_documents)"
                )
        assigned = cluster_assignments[key].load().select(schema.ID, schema.CLUSTER)
        joined = docs.join(assigned, on=schema.ID, how="inner").join(mapping, on=schema.CLUSTER, how="inner")
        log(f"drop {key}: {joined.height}/{docs.height} documents in kept clusters")
        for (sc,), group in joined.sort(schema.ID).group_by(schema.SUPER_CLUSTER, maintain_order=True):
            yield int(sc), group.get_column(schema.TEXT).to_list()


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
    proxy_tokenizer: dict,
    super_clusters: pl.DataFrame,
    raw_documents: dict,
    cluster_assignments: dict,
) -> dg.Output[TokenStoreRef]:
    """Each super-cluster tokenized once into a uint16/uint32 memmap file plus an index."""
    from climb_dagster.core.proxy.tokens import write_token_store

    start = time.perf_counter()
    mapping = super_clusters.select(schema.CLUSTER, schema.SUPER_CLUSTER)
    n_super = int(mapping[schema.SUPER_CLUSTER].max()) + 1
    tokenizer_dir = files.local_dir_copy(files.make_path(proxy_tokenizer["path"], storage.options()))
    batches = _cluster_batches(raw_documents, cluster_assignments, mapping, context.log.info)
    with tempfile.TemporaryDirectory() as tmp:
        store = write_token_store(batches, tokenizer_dir, Path(tmp) / "store", n_clusters=n_super)
        key = store.key()
        target = storage.root() / "cluster_tokens" / key
        files.upload_dir(store.path, target)
        n_tokens, n_docs, vocab = list(store.n_tokens), list(store.n_docs), store.vocab_size
    seconds = time.perf_counter() - start
    table = pl.DataFrame(
        {schema.SUPER_CLUSTER: list(range(n_super)), schema.DOCUMENTS: n_docs, schema.TOKENS: n_tokens}
    )
    return dg.Output(
        TokenStoreRef(str(target), key, vocab, tuple(n_tokens), tuple(n_docs)),
        metadata={
            "total_tokens": int(sum(n_tokens)),
            "n_superclusters": n_super,
            "tokens_per_s": round(sum(n_tokens) / max(seconds, 1e-9)),
            "seconds": round(seconds, 2),
            "per_super_cluster": dg.MetadataValue.md(markdown_table(table)),
            "path": dg.MetadataValue.path(str(target)),
        },
    )


TOKEN_ASSETS = [proxy_tokenizer, cluster_tokens]

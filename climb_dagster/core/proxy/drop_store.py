"""One crawl drop tokenized once, independent of any clustering: the token store's per-drop part.

Every document of the drop is encoded (its token count feeds the natural mixture and the export); the token ids
of a bounded, seeded sample of documents are kept for the proxies. Nothing here depends on centroids, pruning or
super-clusters, so a refit, a re-prune or a re-merge never re-tokenizes a drop, and a new drop tokenizes only
itself. `core/proxy/segments.py` combines the drops into per-super-cluster streams.

Layout of a drop store directory:
    index.json      {"format", "drop", "vocab_size", "dtype", "eod_id", "tokenizer_sha256", "n_docs",
                     "n_tokens", "n_stored_docs", "n_stored_tokens", "sample": {...}, "sha256"}
    tokens.bin      token ids of the stored documents in id order, each followed by the end-of-document id
    docs.parquet    id, n_tokens (with its end-of-document token), offset into tokens.bin (-1: not stored),
                    in id order
    id_hashes.npy   sorted 64-bit hashes of every id (the bounded cross-drop duplicate check reads slices)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.unique_ids import id_hashes
from climb_dagster.core.proxy.tokens import EOD_TOKEN, TOKENIZER_FILE, load_tokenizer, token_dtype

if TYPE_CHECKING:
    import polars as pl

DROP_STORE_FORMAT = "climb-drop-tokens-v1"
INDEX_FILE = "index.json"
TOKENS_FILE = "tokens.bin"
DOCS_FILE = "docs.parquet"
HASHES_FILE = "id_hashes.npy"
# Everything but the token file: what the combined index and the export read.
META_FILES = (INDEX_FILE, DOCS_FILE, HASHES_FILE)
OFFSET = "offset"
# Documents encoded per call of the Rust tokenizer: bounds the memory of one batch of texts and ids.
ENCODE_BATCH = 2048


@dataclass(frozen=True)
class DropTokensConfig:
    """Which documents of a drop keep their token ids for the proxies.

    Args:
        max_stored_tokens: token ids kept per drop, at most (whole documents, taken in a seeded hash order of
            their ids, so the kept set is a uniform sample and does not depend on row order). The default keeps
            every document of a drop up to 16M tokens (the demo's drops hold ~0.5M); at ClimbLab scale
            (~75M tokens per 50k-document drop, 16,000 drops) it keeps ~20% of each drop, and
            `max_tokens_per_super_cluster` of the combined store bounds what the proxies read.
        seed: seed of the hash order.
    """

    max_stored_tokens: int = 16_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_stored_tokens, bool) or not isinstance(self.max_stored_tokens, int):
            raise ClimbInputError(f"max_stored_tokens must be an integer, got {self.max_stored_tokens!r}")
        if self.max_stored_tokens < 1:
            raise ClimbInputError(f"max_stored_tokens must be >= 1, got {self.max_stored_tokens}")


@dataclass(frozen=True)
class DropStore:
    """Read side of a drop store: the stored tokens (memory-mapped) and the per-document table."""

    path: Path
    drop: str
    vocab_size: int
    dtype: np.dtype
    eod_id: int
    tokenizer_sha256: str
    n_docs: int
    n_tokens: int
    n_stored_docs: int
    n_stored_tokens: int
    sha256: str

    @classmethod
    def open(cls, path: str | os.PathLike[str], with_tokens: bool = True) -> DropStore:
        """Open a drop store; `with_tokens=False` reads only the index and the document table (the combined
        index and the export need no token file, so a remote drop's tokens are not fetched for them)."""
        p = Path(path)
        index_file = p / INDEX_FILE
        if not index_file.is_file():
            raise ClimbInputError(f"drop token store index not found: {index_file}")
        try:
            index = json.loads(index_file.read_text())
        except json.JSONDecodeError as exc:
            raise ClimbInputError(f"drop token store index {index_file} is not valid JSON: {exc}") from exc
        if index.get("format") != DROP_STORE_FORMAT:
            raise ClimbInputError(f"{index_file}: format {index.get('format')!r} is not {DROP_STORE_FORMAT!r}")
        try:
            store = cls(
                path=p,
                drop=str(index["drop"]),
                vocab_size=int(index["vocab_size"]),
                dtype=np.dtype(index["dtype"]),
                eod_id=int(index["eod_id"]),
                tokenizer_sha256=str(index["tokenizer_sha256"]),
                n_docs=int(index["n_docs"]),
                n_tokens=int(index["n_tokens"]),
                n_stored_docs=int(index["n_stored_docs"]),
                n_stored_tokens=int(index["n_stored_tokens"]),
                sha256=str(index["sha256"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClimbInputError(f"{index_file}: malformed index ({type(exc).__name__}: {exc})") from exc
        if not with_tokens:
            return store
        size = (p / TOKENS_FILE).stat().st_size if (p / TOKENS_FILE).is_file() else -1
        if size != store.n_stored_tokens * store.dtype.itemsize:
            raise ClimbInputError(
                f"{p / TOKENS_FILE}: {size} bytes, index says {store.n_stored_tokens} tokens of {store.dtype.name}"
            )
        return store

    def tokens(self) -> np.ndarray:
        """The stored token ids, memory-mapped read-only (empty when no document was stored)."""
        if self.n_stored_tokens == 0:
            return np.empty(0, dtype=self.dtype)
        return np.memmap(self.path / TOKENS_FILE, dtype=self.dtype, mode="r")

    def docs(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """id, n_tokens, offset of every document of the drop, in id order."""
        import polars as pl

        return pl.read_parquet(self.path / DOCS_FILE, columns=list(columns) if columns else None)

    def id_hashes(self) -> np.ndarray:
        """Sorted 64-bit hashes of every document id, memory-mapped."""
        return np.load(self.path / HASHES_FILE, mmap_mode="r")


def _hash_order(ids: Sequence[str], seed: int) -> np.ndarray:
    """Row order by a seeded hash of each id: a uniform order that does not depend on the rows' order."""
    keys = id_hashes(ids, salt=f"store:{seed}:")
    return np.lexsort((np.asarray(ids, dtype=object), keys))


def write_drop_store(
    drop: str,
    docs: pl.DataFrame,
    tokenizer_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: DropTokensConfig = DropTokensConfig(),
) -> DropStore:
    """Tokenize the documents (id, text) of one drop into `out_dir` (written whole or not at all).

    Memory: one batch of texts and the kept token ids of this drop (bounded by `max_stored_tokens`).
    """
    import polars as pl

    for column in (schema.ID, schema.TEXT):
        if column not in docs.columns:
            raise ClimbInputError(f"drop {drop!r}: documents have no {column!r} column (columns {docs.columns})")
    if docs.height == 0:
        raise ClimbInputError(f"drop {drop!r} has no documents to tokenize")
    tok = load_tokenizer(tokenizer_dir)
    backend = tok.backend_tokenizer
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    dtype = token_dtype(vocab_size)
    eod_id = backend.token_to_id(EOD_TOKEN)
    if eod_id is None:
        raise ClimbInputError(f"tokenizer in {tokenizer_dir} has no {EOD_TOKEN} token")

    docs = docs.select(schema.ID, schema.TEXT).sort(schema.ID)
    ids = docs.get_column(schema.ID).to_list()
    n = len(ids)
    # Encode in hash order and stop storing once the budget is spent (counts are needed for every document).
    order = _hash_order(ids, config.seed)
    counts = np.zeros(n, dtype=np.int64)
    kept: dict[int, np.ndarray] = {}
    budget = config.max_stored_tokens
    texts = docs.get_column(schema.TEXT)
    for start in range(0, n, ENCODE_BATCH):
        rows = order[start : start + ENCODE_BATCH]
        encoded = backend.encode_batch_fast(texts.gather(rows).to_list(), add_special_tokens=False)
        for row, e in zip(rows.tolist(), encoded, strict=True):
            size = len(e.ids) + 1  # with its end-of-document token
            counts[row] = size
            if size <= budget:
                kept[row] = np.asarray(e.ids, dtype=dtype)
                budget -= size
            else:
                budget = 0  # whole documents only, and the sample stays a prefix of the hash order

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    offsets = np.full(n, -1, dtype=np.int64)
    digest = hashlib.sha256()
    position = 0
    eod = np.array([eod_id], dtype=dtype)
    with open(tmp / TOKENS_FILE, "wb") as handle:
        for row in sorted(kept):
            chunk = np.concatenate([kept[row], eod]).tobytes()
            handle.write(chunk)
            digest.update(chunk)
            offsets[row] = position
            position += int(counts[row])
    pl.DataFrame(
        {schema.ID: ids, schema.N_TOKENS: counts, OFFSET: offsets},
        schema={schema.ID: pl.String, schema.N_TOKENS: pl.Int64, OFFSET: pl.Int64},
    ).write_parquet(tmp / DOCS_FILE, compression="zstd")
    np.save(tmp / HASHES_FILE, np.sort(id_hashes(ids)))
    index = {
        "format": DROP_STORE_FORMAT,
        "drop": drop,
        "vocab_size": vocab_size,
        "dtype": dtype.name,
        "eod_id": eod_id,
        "tokenizer_sha256": hashlib.sha256((Path(tokenizer_dir) / TOKENIZER_FILE).read_bytes()).hexdigest(),
        "n_docs": n,
        "n_tokens": int(counts.sum()),
        "n_stored_docs": len(kept),
        "n_stored_tokens": position,
        "sample": asdict(config),
        "sha256": digest.hexdigest(),
    }
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1, sort_keys=True))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return DropStore.open(out)


def drop_store_summary(store: DropStore) -> dict[str, Any]:
    """What the drop_tokens asset reports (and the combined store's index records per drop)."""
    return {
        "drop": store.drop,
        "documents": store.n_docs,
        "tokens": store.n_tokens,
        "stored_documents": store.n_stored_docs,
        "stored_tokens": store.n_stored_tokens,
        "sha256": store.sha256,
    }

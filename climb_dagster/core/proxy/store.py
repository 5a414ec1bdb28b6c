"""The token store's read side (`TokenStore`: one token stream per super-cluster) and the single-step writer.

Two layouts open as the same `TokenStore`:
    climb-tokens-v1   one memory-mapped file per super-cluster (`write_token_store`; benchmarks and tests)
    climb-tokens-v2   an index of segments over per-drop token files (`core/proxy/segments.py`; the pipeline)

v1 layout of a token store directory:
    index.json            {"format", "vocab_size", "dtype", "eod_id", "tokenizer_sha256",
                           "clusters": {"0": {"file", "n_tokens", "n_docs", "dtype", "sha256"}, ...}}
    cluster_000.bin ...   raw token ids of one super-cluster, documents separated by the end-of-document id
    tokenizer.json, tokenizer_config.json, ...   the tokenizer, so the store is self-contained
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.proxy.segments import open_segmented, segmented_key
from climb_dagster.core.proxy.tokens import (
    EOD_TOKEN,
    INDEX_FILE,
    STORE_FORMAT,
    STORE_FORMAT_V2,
    TOKENIZER_FILE,
    load_tokenizer,
    token_dtype,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()



def write_token_store(
    batches: Iterable[tuple[int, Sequence[str]]],
    tokenizer_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    n_clusters: int | None = None,
) -> TokenStore:
    """Tokenize streamed `(super_cluster_id, texts)` batches into one memmap file per super-cluster.

    Only one batch of tokens is in memory at a time. Each document is followed by the end-of-document
    token. Everything is written under a temporary name and renamed when complete, so a crash never
    leaves a half-written store that looks finished. Super-cluster ids are 0..n_clusters-1
    (`n_clusters` defaults to max id + 1); ids without documents get an empty file.
    """
    tok = load_tokenizer(tokenizer_dir)
    backend = tok.backend_tokenizer
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    dtype = token_dtype(vocab_size)
    eod_id = backend.token_to_id(EOD_TOKEN)
    if eod_id is None:
        raise ClimbInputError(f"tokenizer in {tokenizer_dir} has no {EOD_TOKEN} token")
    if n_clusters is not None and (
        isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters <= 0
    ):
        raise ClimbInputError(f"n_clusters must be a positive integer, got {n_clusters!r}")

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    handles: dict[int, Any] = {}
    digests: dict[int, Any] = {}
    n_tokens: dict[int, int] = {}
    n_docs: dict[int, int] = {}
    try:
        for cid, texts in batches:
            if isinstance(cid, bool) or not isinstance(cid, int | np.integer) or cid < 0:
                raise ClimbInputError(f"super-cluster id must be a non-negative integer, got {cid!r}")
            cid = int(cid)
            if n_clusters is not None and cid >= n_clusters:
                raise ClimbInputError(f"super-cluster id {cid} out of range for n_clusters={n_clusters}")
            texts = list(texts)
            if not texts:
                continue
            if cid not in handles:
                handles[cid] = open(tmp / _cluster_file(cid), "wb")  # noqa: SIM115 (closed in finally)
                digests[cid] = hashlib.sha256()
                n_tokens[cid] = n_docs[cid] = 0
            encoded = backend.encode_batch_fast(texts, add_special_tokens=False)
            ids = [np.asarray(e.ids, dtype=dtype) for e in encoded]
            eod = np.array([eod_id], dtype=dtype)
            chunk = np.concatenate([part for doc in ids for part in (doc, eod)])
            data = chunk.tobytes()
            handles[cid].write(data)
            digests[cid].update(data)
            n_tokens[cid] += int(chunk.size)
            n_docs[cid] += len(texts)
    finally:
        for h in handles.values():
            h.close()

    k = n_clusters if n_clusters is not None else (max(n_tokens) + 1 if n_tokens else 0)
    if k == 0:
        shutil.rmtree(tmp)
        raise ClimbInputError("no documents to tokenize: every batch was empty")
    clusters: dict[str, dict[str, Any]] = {}
    for cid in range(k):
        file = _cluster_file(cid)
        if cid not in handles:
            (tmp / file).touch()
        clusters[str(cid)] = {
            "file": file,
            "n_tokens": n_tokens.get(cid, 0),
            "n_docs": n_docs.get(cid, 0),
            "dtype": dtype.name,
            "sha256": digests[cid].hexdigest() if cid in digests else hashlib.sha256().hexdigest(),
        }
    tok.save_pretrained(str(tmp))
    index = {
        "format": STORE_FORMAT,
        "vocab_size": vocab_size,
        "dtype": dtype.name,
        "eod_id": eod_id,
        "tokenizer_sha256": _file_sha256(tmp / TOKENIZER_FILE),
        "clusters": clusters,
    }
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1, sort_keys=True))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return TokenStore.open(out)



def _inside(store: Path, name: Any, cid: int) -> Path:
    """The token file an index entry names, refused unless it is a plain file name inside the store
    (no separators, no '..', no symlink leading out): an index must not make a reader map any file."""
    index = store / INDEX_FILE
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or Path(name).name != name
        or "\\" in name
    ):
        raise ClimbInputError(
            f"{index}: super-cluster {cid} names token file {name!r}, not a file inside the store"
        )
    file = store / name
    if file.is_symlink() or not file.resolve().is_relative_to(store.resolve()):
        raise ClimbInputError(f"{index}: token file {name!r} of super-cluster {cid} points outside the store")
    return file



def _cluster_file(cid: int) -> str:
    return f"cluster_{cid:03d}.bin"



@dataclass(frozen=True, eq=False)
class TokenStore:
    """Read side of a token store: one token stream per super-cluster, indexed 0..n_clusters-1 (a read-only
    memmap in v1, a `SegmentedTokens` over the drops' files in v2; both index as `tokens[c][positions]`)."""

    path: Path
    vocab_size: int
    dtype: np.dtype
    eod_id: int
    tokenizer_sha256: str
    n_tokens: tuple[int, ...]
    n_docs: tuple[int, ...]
    sha256: tuple[str, ...]
    tokens: tuple[Any, ...]
    # The content key (v2: computed from its index; v1: from the cluster files' sha256, see `key`).
    content_key: str = ""
    # v2: the crawl drops its segments index (a segment's drop column indexes this); v1: none.
    drop_keys: tuple[str, ...] = ()

    @classmethod
    def open(cls, path: str | os.PathLike[str], resolve: Callable[[str], Path] | None = None) -> TokenStore:
        """Open a v1 or v2 store; `resolve` maps a v2 index's drop-store path to a local folder (e.g. a cached
        copy of an s3:// folder); by default the paths are used as they are."""
        p = Path(path)
        index_file = p / INDEX_FILE
        if not index_file.is_file():
            raise ClimbInputError(f"token store index not found: {index_file}")
        try:
            index = json.loads(index_file.read_text())
        except json.JSONDecodeError as exc:
            raise ClimbInputError(f"token store index {index_file} is not valid JSON: {exc}") from exc
        if index.get("format") not in (STORE_FORMAT, STORE_FORMAT_V2):
            raise ClimbInputError(
                f"{index_file}: format {index.get('format')!r} is not {STORE_FORMAT!r} or {STORE_FORMAT_V2!r}"
            )
        try:
            if index["format"] == STORE_FORMAT_V2:
                return cls._from_segments(p, index, resolve)
            return cls._from_index(p, index)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ClimbInputError):
                raise
            raise ClimbInputError(f"{index_file}: malformed index ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def _from_index(cls, p: Path, index: dict[str, Any]) -> TokenStore:
        clusters = index["clusters"]
        ids = sorted(int(c) for c in clusters)
        if ids != list(range(len(ids))):
            raise ClimbInputError(f"{p / INDEX_FILE}: super-cluster ids {ids} are not 0..{len(ids) - 1}")
        arrays, n_tokens, n_docs, digests = [], [], [], []
        for cid in ids:
            entry = clusters[str(cid)]
            dtype = np.dtype(entry["dtype"])
            file = _inside(p, entry["file"], cid)
            if not file.is_file():
                raise ClimbInputError(f"token file of super-cluster {cid} not found: {file}")
            n = int(entry["n_tokens"])
            if file.stat().st_size != n * dtype.itemsize:
                raise ClimbInputError(
                    f"{file}: {file.stat().st_size} bytes, index says {n} tokens of {dtype.name}"
                )
            # np.memmap refuses empty files; an empty cluster is a valid (never sampled) cluster.
            arrays.append(np.memmap(file, dtype=dtype, mode="r") if n else np.empty(0, dtype=dtype))
            n_tokens.append(n)
            n_docs.append(int(entry["n_docs"]))
            digests.append(str(entry["sha256"]))
        return cls(
            path=p,
            vocab_size=int(index["vocab_size"]),
            dtype=np.dtype(index["dtype"]),
            eod_id=int(index["eod_id"]),
            tokenizer_sha256=str(index["tokenizer_sha256"]),
            n_tokens=tuple(n_tokens),
            n_docs=tuple(n_docs),
            sha256=tuple(digests),
            tokens=tuple(arrays),
        )

    @classmethod
    def _from_segments(cls, p: Path, index: dict[str, Any], resolve: Callable[[str], Path] | None) -> TokenStore:
        streams, n_tokens, n_docs, digests = open_segmented(p, index, resolve)
        return cls(
            path=p,
            vocab_size=int(index["vocab_size"]),
            dtype=np.dtype(index["dtype"]),
            eod_id=int(index["eod_id"]),
            tokenizer_sha256=str(index["tokenizer_sha256"]),
            n_tokens=tuple(n_tokens),
            n_docs=tuple(n_docs),
            sha256=tuple(digests),
            tokens=tuple(streams),
            content_key=segmented_key(index),
            drop_keys=tuple(str(d["key"]) for d in index["drops"]),
        )

    @property
    def n_clusters(self) -> int:
        return len(self.tokens)

    @property
    def total_tokens(self) -> int:
        return sum(self.n_tokens)

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        return load_tokenizer(self.path)

    def key(self) -> str:
        """Content key of the store, for caching proxy runs: v1, the tokenizer and every cluster file's sha256;
        v2, the tokenizer, the drops' token files and every super-cluster's segments."""
        if self.content_key:
            return self.content_key
        return content_hash({"tok": self.tokenizer_sha256, "clusters": list(self.sha256)})

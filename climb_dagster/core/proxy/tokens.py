"""BPE tokenizer trained on the corpus, and super-clusters tokenized once into uint16/uint32 memmaps.

Layout of a token store directory:
    index.json            {"format", "vocab_size", "dtype", "eod_id", "tokenizer_sha256",
                           "clusters": {"0": {"file", "n_tokens", "n_docs", "dtype", "sha256"}, ...}}
    cluster_000.bin ...   raw token ids of one super-cluster, documents separated by the end-of-document id
    tokenizer.json, tokenizer_config.json, ...   the tokenizer, so the store is self-contained
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (EOD_TOKEN, PAD_TOKEN)
TOKENIZER_FILE = "tokenizer.json"
INDEX_FILE = "index.json"
STORE_FORMAT = "climb-tokens-v1"


def bounded_sample(texts: Iterable[str], max_docs: int, max_doc_chars: int, seed: int) -> list[str]:
    """A seeded uniform sample of at most `max_docs` texts (reservoir), each cut to `max_doc_chars`.

    Memory is bounded by `max_docs * max_doc_chars` whatever the corpus size.
    """
    if max_docs <= 0 or max_doc_chars <= 0:
        raise ClimbInputError(f"max_docs and max_doc_chars must be positive, got {max_docs}, {max_doc_chars}")
    rng = random.Random(seed)
    reservoir: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ClimbInputError(f"tokenizer training text #{i} is {type(text).__name__}, not str")
        if i < max_docs:
            reservoir.append(text[:max_doc_chars])
        else:
            j = rng.randint(0, i)
            if j < max_docs:
                reservoir[j] = text[:max_doc_chars]
    return reservoir


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike[str],
    vocab_size: int = 4096,
    seed: int = 0,
    max_docs: int = 20_000,
    max_doc_chars: int = 4_000,
    min_frequency: int = 2,
) -> Path:
    """Train a byte-level BPE tokenizer on a bounded seeded sample of `texts`; save it to `out_dir`.

    Byte-level, so any text encodes without unknown tokens. The end-of-document token is id 0.
    Writes tokenizer.json plus the files `PreTrainedTokenizerFast.from_pretrained` reads.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 300 <= vocab_size <= 2**32:
        raise ClimbInputError(
            f"tokenizer vocab_size must be an integer >= 300 (bytes + specials), got {vocab_size!r}"
        )
    sample = [t for t in bounded_sample(texts, max_docs, max_doc_chars, seed) if t.strip()]
    if not sample:
        raise ClimbInputError("no non-empty text to train the tokenizer on")
    # Sorted so that the sample, not the order it arrived in, determines the merges.
    sample.sort()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample, trainer=trainer, length=len(sample))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _wrap(tok).save_pretrained(str(out))
    return out


def _wrap(tok: Any) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOD_TOKEN, bos_token=EOD_TOKEN, pad_token=PAD_TOKEN
    )


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `train_tokenizer` (a directory, or the tokenizer.json in it)."""
    from tokenizers import Tokenizer

    p = Path(path)
    file = p / TOKENIZER_FILE if p.is_dir() else p
    if not file.is_file():
        raise ClimbInputError(f"tokenizer file not found: {file}")
    return _wrap(Tokenizer.from_file(str(file)))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


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
    """Read side of a token store: one read-only memmap per super-cluster, indexed 0..n_clusters-1."""

    path: Path
    vocab_size: int
    dtype: np.dtype
    eod_id: int
    tokenizer_sha256: str
    n_tokens: tuple[int, ...]
    n_docs: tuple[int, ...]
    sha256: tuple[str, ...]
    tokens: tuple[np.ndarray, ...]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TokenStore:
        p = Path(path)
        index_file = p / INDEX_FILE
        if not index_file.is_file():
            raise ClimbInputError(f"token store index not found: {index_file}")
        try:
            index = json.loads(index_file.read_text())
        except json.JSONDecodeError as exc:
            raise ClimbInputError(f"token store index {index_file} is not valid JSON: {exc}") from exc
        if index.get("format") != STORE_FORMAT:
            raise ClimbInputError(f"{index_file}: format {index.get('format')!r} is not {STORE_FORMAT!r}")
        try:
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

    @property
    def n_clusters(self) -> int:
        return len(self.tokens)

    @property
    def total_tokens(self) -> int:
        return sum(self.n_tokens)

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        return load_tokenizer(self.path)

    def key(self) -> str:
        """Content key of the store (tokenizer + every cluster file's sha256), for caching proxy runs."""

        return content_hash({"tok": self.tokenizer_sha256, "clusters": list(self.sha256)})

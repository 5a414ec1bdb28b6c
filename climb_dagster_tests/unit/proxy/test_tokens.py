from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.store import TokenStore, write_token_store
from climb_dagster.core.proxy.tokens import (
    EOD_TOKEN,
    bounded_sample,
    load_tokenizer,
    token_dtype,
    train_tokenizer,
)
from climb_dagster_tests.unit import proxy_corpus as pc


def test_tokenizer_saves_json_and_loads_as_fast_tokenizer() -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    d = pc.tokenizer_dir()
    assert (d / "tokenizer.json").is_file()
    tok = load_tokenizer(d)
    assert isinstance(tok, PreTrainedTokenizerFast)
    auto = AutoTokenizer.from_pretrained(str(d))
    text = "Permission is granted to copy, distribute and modify this software."
    assert tok.encode(text) == auto.encode(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.eos_token == EOD_TOKEN and tok.eos_token_id == 0 and tok.pad_token_id is not None
    assert len(tok) <= pc.TINY_VOCAB


def test_tokenizer_training_is_deterministic_by_seed(tmp_path: Path) -> None:
    texts = pc.texts()
    a = train_tokenizer(texts, tmp_path / "a", vocab_size=400, seed=3, max_docs=100)
    b = train_tokenizer(list(reversed(texts)), tmp_path / "b", vocab_size=400, seed=3, max_docs=len(texts))
    c = train_tokenizer(texts, tmp_path / "c", vocab_size=400, seed=3, max_docs=100)
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()
    # Full sample: arrival order must not matter.
    d = train_tokenizer(texts, tmp_path / "d", vocab_size=400, seed=3, max_docs=len(texts))
    assert (b / "tokenizer.json").read_bytes() == (d / "tokenizer.json").read_bytes()


def test_bounded_sample_is_bounded_and_seeded() -> None:
    texts = [f"doc {i} " * 50 for i in range(1000)]
    s1 = bounded_sample(iter(texts), max_docs=10, max_doc_chars=20, seed=1)
    assert len(s1) == 10 and all(len(t) <= 20 for t in s1)
    assert s1 == bounded_sample(iter(texts), 10, 20, seed=1)
    assert s1 != bounded_sample(iter(texts), 10, 20, seed=2)


def test_tokenizer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ClimbInputError, match="vocab_size"):
        train_tokenizer(["abc"], tmp_path, vocab_size=10)
    with pytest.raises(ClimbInputError, match="no non-empty text"):
        train_tokenizer(["  ", ""], tmp_path, vocab_size=400)
    with pytest.raises(ClimbInputError, match="not found"):
        load_tokenizer(tmp_path / "nope")


def test_store_round_trip_counts_dtype_and_index() -> None:
    store = pc.store()
    tok = load_tokenizer(pc.tokenizer_dir())
    assert store.n_clusters == 3 and store.dtype == np.uint16
    index = json.loads((store.path / "index.json").read_text())
    assert index["vocab_size"] == store.vocab_size == len(tok)
    for cid in range(3):
        texts = [t for c, batch in pc.cluster_batches(3) if c == cid for t in batch]
        expected = np.concatenate([np.array(tok.encode(t) + [store.eod_id]) for t in texts])
        entry = index["clusters"][str(cid)]
        assert entry["n_tokens"] == expected.size == store.n_tokens[cid]
        assert entry["n_docs"] == len(texts) == store.n_docs[cid]
        assert entry["dtype"] == "uint16"
        assert isinstance(store.tokens[cid], np.memmap)
        np.testing.assert_array_equal(np.asarray(store.tokens[cid]), expected)
    assert not list(store.path.parent.glob("*.tmp"))
    reopened = TokenStore.open(store.path)
    assert reopened.n_tokens == store.n_tokens and reopened.key() == store.key()


def test_store_empty_cluster_and_bad_ids(tmp_path: Path) -> None:
    s = write_token_store(
        [(0, ["hello world"] * 3), (2, ["copyright notice"])], pc.tokenizer_dir(), tmp_path / "s"
    )
    assert s.n_clusters == 3 and s.n_tokens[1] == 0 and s.n_docs == (3, 0, 1)
    with pytest.raises(ClimbInputError, match="out of range"):
        write_token_store([(5, ["x"])], pc.tokenizer_dir(), tmp_path / "t", n_clusters=2)
    with pytest.raises(ClimbInputError, match="non-negative integer"):
        write_token_store([(-1, ["x"])], pc.tokenizer_dir(), tmp_path / "u")
    with pytest.raises(ClimbInputError, match="no documents"):
        write_token_store([(0, [])], pc.tokenizer_dir(), tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_store_open_errors(tmp_path: Path) -> None:
    with pytest.raises(ClimbInputError, match="index not found"):
        TokenStore.open(tmp_path)
    s = write_token_store([(0, ["some text here"])], pc.tokenizer_dir(), tmp_path / "s")
    with open(s.path / "cluster_000.bin", "ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(ClimbInputError, match="cluster_000.bin"):
        TokenStore.open(s.path)


def test_token_dtype_widens_for_large_vocabularies() -> None:
    assert token_dtype(4096) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_store_key_follows_content_and_malformed_index_is_named(tmp_path: Path) -> None:
    # Same documents in another order: same counts, different content.
    a = write_token_store([(0, ["copyright notice", "free software"])], pc.tokenizer_dir(), tmp_path / "a")
    b = write_token_store([(0, ["free software", "copyright notice"])], pc.tokenizer_dir(), tmp_path / "b")
    assert a.n_tokens == b.n_tokens and a.key() != b.key()
    assert TokenStore.open(a.path).key() == a.key()
    index = json.loads((b.path / "index.json").read_text())
    del index["clusters"]["0"]["sha256"]
    (b.path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ClimbInputError, match=r"index.json: malformed index .*sha256"):
        TokenStore.open(b.path)

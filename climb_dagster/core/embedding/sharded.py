"""Several embedders (one per GPU of a node) used as one: a drop split into contiguous shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.embedding.encoder import EmbedProgress, SentenceEmbedder
from climb_dagster.core.embedding.sizing import device_list, shard_ranges


def load_embedder(config: Any) -> Any:
    """A `SentenceEmbedder` for one device, or a `ShardedEmbedder` with one per device of a multi-device
    setting (each loads its own copy of the model)."""
    from dataclasses import replace


    devices = device_list(config.device)
    if devices is None:
        return SentenceEmbedder.load(config)
    return ShardedEmbedder([SentenceEmbedder.load(replace(config, device=d)) for d in devices])


class ShardedEmbedder:
    """Several embedders (one per GPU of a node) used as one: `embed` splits the texts into contiguous
    shards, embeds them at once and writes each into its slice of `out`, so rows keep the input order.

    Threads suffice: the GPU kernels and the Rust tokenizers release the GIL.
    """

    def __init__(self, embedders: Sequence[Any]) -> None:
        if not embedders:
            raise ClimbInputError("ShardedEmbedder needs at least one embedder")
        self.embedders = list(embedders)
        first = self.embedders[0]
        self.spec, self.precision, self.max_length = first.spec, first.precision, first.max_length
        self.dimension, self.token_budget, self.max_batch_size = (
            first.dimension,
            first.token_budget,
            first.max_batch_size,
        )
        self.device = ",".join(e.device for e in self.embedders)

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedders[0].count_tokens(texts)

    def embed(
        self,
        texts: Sequence[str],
        progress: Callable[[Any], None] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Like `SentenceEmbedder.embed`; progress reports the shards' sums (elapsed: the slowest shard)."""
        import threading


        texts = list(texts)
        n = len(texts)
        if out is None:
            out = np.zeros((n, self.dimension), dtype=np.float32)
        ranges = shard_ranges(n, len(self.embedders))
        if not ranges:
            return self.embedders[0].embed(texts, progress=progress, out=out)
        latest: dict[int, Any] = {}
        lock = threading.Lock()

        def reporter(shard: int) -> Callable[[Any], None] | None:
            if progress is None:
                return None

            def report(p: Any) -> None:
                with lock:
                    latest[shard] = p
                    snaps = list(latest.values())
                    progress(
                        EmbedProgress(
                            docs_done=sum(s.docs_done for s in snaps),
                            docs_total=n,
                            tokens_done=sum(s.tokens_done for s in snaps),
                            elapsed_s=max(s.elapsed_s for s in snaps),
                        )
                    )

            return report

        with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
            futures = [
                pool.submit(e.embed, texts[a:b], reporter(i), out[a:b])
                for i, (e, (a, b)) in enumerate(zip(self.embedders, ranges, strict=False))
            ]
            for future in futures:
                future.result()
        return out

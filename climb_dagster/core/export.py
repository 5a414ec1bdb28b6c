"""Export a mixture for training frameworks: blend weights in three formats and a sampled training set.

The sampled set works like ClimbMix: each super-cluster c contributes `weight_c * token_budget` tokens; a
document of c is kept `floor(r_c)` times plus once more with probability `frac(r_c)`, where
`r_c = target_c / available_c` (so clusters smaller than their share are repeated, as epochs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core import schema
from climb_dagster.core.errors import ClimbInputError
from climb_dagster.core.search.sampling import validate_mixtures


def blend_formats(
    weights: Sequence[float], names: Sequence[str], data_prefixes: Sequence[str]
) -> dict[str, Any]:
    """The mixture as JSON weights, a Megatron-LM/NeMo `--data-path` list and HF interleave probabilities."""
    w = validate_mixtures(np.asarray([weights], dtype=np.float64), len(names), source="final mixture")[0]
    if len(data_prefixes) != len(names):
        raise ClimbInputError(f"{len(data_prefixes)} data prefixes for {len(names)} super-clusters")
    keep = [i for i in range(len(names)) if w[i] > 0]
    return {
        "weights": {names[i]: float(w[i]) for i in range(len(names))},
        # Megatron/NeMo take "weight prefix weight prefix ..." and renormalise the weights themselves.
        "megatron_data_path": " ".join(f"{w[i]:.6f} {data_prefixes[i]}" for i in keep),
        "megatron_data_path_list": [[float(w[i]), data_prefixes[i]] for i in keep],
        # datasets.interleave_datasets([ds_0, ds_1, ...], probabilities=..., stopping_strategy="all_exhausted")
        "hf_interleave_datasets": {
            "datasets": [names[i] for i in keep],
            "probabilities": [float(w[i]) for i in keep],
        },
    }


def repeat_rates(weights: Sequence[float], available_tokens: Sequence[int], token_budget: int) -> np.ndarray:
    """How many times, in expectation, each super-cluster's documents are used to meet the budget."""
    w = np.asarray(weights, dtype=np.float64)
    avail = np.asarray(available_tokens, dtype=np.float64)
    if token_budget < 1:
        raise ClimbInputError(f"token_budget must be >= 1, got {token_budget}")
    empty = (avail <= 0) & (w > 0)
    if empty.any():
        raise ClimbInputError(f"super-clusters {np.flatnonzero(empty).tolist()} have weight but no tokens")
    return np.divide(w * token_budget, avail, out=np.zeros_like(w), where=avail > 0)


def _uniform(ids: Sequence[str], seed: int) -> np.ndarray:
    """A uniform [0, 1) draw per document id, independent of row order (so drops can stream in any order)."""
    out = np.empty(len(ids))
    for i, doc_id in enumerate(ids):
        h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little") / 2**64
    return out


def sample_documents(docs: pl.DataFrame, rates: np.ndarray, seed: int) -> pl.DataFrame:
    """Rows of `docs` (with a super_cluster column), each repeated as often as its cluster's rate draws."""
    if docs.height == 0:
        return docs
    r = rates[docs[schema.SUPER_CLUSTER].to_numpy()]
    whole = np.floor(r)
    copies = whole.astype(np.int64) + (_uniform(docs[schema.ID].to_list(), seed) < (r - whole))
    return docs[np.repeat(np.arange(docs.height), copies)]

"""Typed wrappers for objects stored as text or tensors (never pickled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelText:
    """One or more models serialised as text (LightGBM `model_to_string`; an ensemble has several), with a
    JSON sidecar of metadata."""

    texts: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.texts or not all(isinstance(t, str) for t in self.texts):
            raise ValueError("ModelText needs at least one model text")


@dataclass(frozen=True)
class TensorBundle:
    """Named numpy arrays stored as one safetensors file (string metadata only)."""

    tensors: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)

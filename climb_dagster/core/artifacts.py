"""Typed wrappers for objects stored as text or tensors (never pickled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelText:
    """A model serialised as text (LightGBM `model_to_string`), with a JSON sidecar of metadata."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorBundle:
    """Named numpy arrays stored as one safetensors file (string metadata only)."""

    tensors: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)

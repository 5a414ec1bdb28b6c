"""Core configs from the fields of a validated (Dagster/pydantic) config, without field-by-field copies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def core_config(cls: type[T], source: Any, **extra: Any) -> T:
    """`cls(**fields of source, **extra)`: `source` is a pydantic model (Dagster Config) or a mapping.

    A field the core config lacks fails here with the field's name, so the two cannot drift apart silently.
    """
    values: Mapping[str, Any] = source.model_dump() if hasattr(source, "model_dump") else dict(source)
    return cls(**values, **extra)

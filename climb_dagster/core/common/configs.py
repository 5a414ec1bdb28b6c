"""Core configs from the fields of a validated (Dagster/pydantic) config, without field-by-field copies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def core_config(cls: type[T], source: Any, exclude: Iterable[str] = (), **extra: Any) -> T:
    """`cls(**fields of source, **extra)`: `source` is a pydantic model (Dagster Config) or a mapping.

    `exclude` names the source's fields that are not the core config's (the asset uses them itself). Any
    other field the core config lacks fails here with its name, so the two cannot drift apart silently.
    """
    values: Mapping[str, Any] = source.model_dump() if hasattr(source, "model_dump") else dict(source)
    skip = set(exclude)
    return cls(**{k: v for k, v in values.items() if k not in skip}, **extra)

"""The typed records of a round's proxies: a job (a mixture to train a proxy on) and its outcome.

An outcome's `to_dict()` is the proxy cache's result.json (the same keys, order and values as ever, so
entries written before these records existed load and compare equal) plus `mixture_id` and `cached` once
the outcome belongs to a round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.composition import Composition


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ProxyJob:
    """One proxy of a round to train, or to reuse from the cache under `proxy_key`."""

    mixture_id: str
    proxy_key: str
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _floats(self.weights))

    def to_dict(self) -> dict[str, Any]:
        return {
            schema.MIXTURE_ID: self.mixture_id,
            schema.PROXY_KEY: self.proxy_key,
            schema.WEIGHTS: list(self.weights),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxyJob:
        if not isinstance(data, Mapping):
            raise ClimbInputError(f"a proxy job is an object, got {json.dumps(data, default=str)[:300]}")
        try:
            return cls(str(data[schema.MIXTURE_ID]), str(data[schema.PROXY_KEY]), data[schema.WEIGHTS])
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad("proxy job", exc, data) from exc


@dataclass(frozen=True)
class ProxyOutcome:
    """A finished proxy run, failed or not: its score on the target, training summary and real times.

    Args:
        score: the target score; None when the run failed (diverged, or a non-finite score).
        train_loss: mean loss over the last 10% of steps; None when not finite.
        wall_s: training time (a pack's members share the pack's).
        started_at: epoch seconds when training began; ended_at: when scoring ended. None (with
            loss_curve) in entries cached before they were kept.
        loss_curve: ((step, mean loss over the steps before it), ...), about 20 points.
        mixture_id: the round's mixture the run answers; cached: whether it came from the cache. Both None
            in the cache's own copy.
        composition: the tokens it trained on per (super-cluster, drop, fine cluster); None for runs on a
            v1 token store (no drops or fine clusters kept).
    """

    proxy_key: str
    status: str
    reason: str
    score: float | None
    train_loss: float | None
    tokens: int
    steps: int
    wall_s: float
    tokens_per_s: float
    n_params: int
    weights: tuple[float, ...]
    started_at: float | None = None
    ended_at: float | None = None
    loss_curve: tuple[tuple[int, float], ...] | None = None
    mixture_id: str | None = None
    cached: bool | None = None
    composition: Composition | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _floats(self.weights))
        if isinstance(self.composition, Mapping):
            object.__setattr__(self, "composition", Composition.from_dict(self.composition))
        if self.loss_curve is not None:
            curve = tuple((int(step), float(loss)) for step, loss in self.loss_curve)
            object.__setattr__(self, "loss_curve", curve)

    @property
    def ok(self) -> bool:
        return self.status == schema.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; fields that are None because the record predates them (or is the cache's own copy)
        are left out, so a stored record reads back to the same dict."""
        data: dict[str, Any] = {
            schema.PROXY_KEY: self.proxy_key,
            schema.STATUS: self.status,
            schema.REASON: self.reason,
            schema.SCORE: self.score,
            schema.TRAIN_LOSS: self.train_loss,
            schema.TOKENS: self.tokens,
            schema.STEPS: self.steps,
            schema.WALL_S: self.wall_s,
            schema.TOKENS_PER_S: self.tokens_per_s,
            schema.N_PARAMS: self.n_params,
            schema.WEIGHTS: list(self.weights),
            schema.STARTED_AT: self.started_at,
            schema.ENDED_AT: self.ended_at,
            schema.LOSS_CURVE: None if self.loss_curve is None else [list(p) for p in self.loss_curve],
            schema.MIXTURE_ID: self.mixture_id,
            schema.CACHED: self.cached,
            schema.COMPOSITION: None if self.composition is None else self.composition.to_dict(),
        }
        for name in _OPTIONAL:
            if data[name] is None:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxyOutcome:
        if not isinstance(data, Mapping):
            raise ClimbInputError(f"a proxy outcome is an object, got {json.dumps(data, default=str)[:300]}")
        try:
            cached = data.get(schema.CACHED)
            return cls(
                proxy_key=str(data[schema.PROXY_KEY]),
                status=str(data[schema.STATUS]),
                reason=str(data[schema.REASON]),
                score=_float_or_none(data[schema.SCORE]),
                train_loss=_float_or_none(data[schema.TRAIN_LOSS]),
                tokens=int(data[schema.TOKENS]),
                steps=int(data[schema.STEPS]),
                wall_s=float(data[schema.WALL_S]),
                tokens_per_s=float(data[schema.TOKENS_PER_S]),
                n_params=int(data[schema.N_PARAMS]),
                weights=data[schema.WEIGHTS],
                started_at=_float_or_none(data.get(schema.STARTED_AT)),
                ended_at=_float_or_none(data.get(schema.ENDED_AT)),
                loss_curve=data.get(schema.LOSS_CURVE),
                mixture_id=None if data.get(schema.MIXTURE_ID) is None else str(data[schema.MIXTURE_ID]),
                cached=None if cached is None else bool(cached),
                composition=data.get(schema.COMPOSITION),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad("proxy outcome", exc, data) from exc


# Fields a stored outcome may lack: times and curve (kept since 2026-11-30), round fields (not in the cache).
# Composition: kept since 2026-12-04 (a run cached before gets it computed when reused, see jobs._run_jobs).
_OPTIONAL = (
    schema.STARTED_AT,
    schema.ENDED_AT,
    schema.LOSS_CURVE,
    schema.MIXTURE_ID,
    schema.CACHED,
    schema.COMPOSITION,
)


def _bad(kind: str, exc: Exception, data: Any) -> ClimbInputError:
    what = f"is missing {exc.args[0]!r}" if isinstance(exc, KeyError) else f"has a bad value ({exc})"
    return ClimbInputError(f"{kind} {what}: {json.dumps(data, default=str)[:300]}")

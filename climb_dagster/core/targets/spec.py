"""The target of the mixture search: which evaluators score a proxy, their weights and the direction.

A component's value has a natural direction (loss: minimize, multiple-choice accuracy: maximize).
The score is `sum(weight * value * sign)` with sign +1 where the component's natural direction is the
target's direction and -1 otherwise, so e.g. a "minimize" target of loss + accuracy scores
`loss - accuracy`: lower is better on both counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.targets.evaluators import NORMALIZATIONS
from climb_dagster.core.targets.kinds import LOSS, MULTIPLE_CHOICE, EvaluatorKind, kind_named

DIRECTIONS = tuple(d.value for d in Direction)


@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator: `kind` names a registered EvaluatorKind (core/targets/kinds): "loss" (path: .npy
    windows), "multiple_choice" (path: JSONL) or "lm_eval" (path: a folder of lm-eval task YAML + data;
    `tasks` and `metric` say what to run and report)."""

    kind: str
    path: str
    weight: float = 1.0
    normalize: str = "char"
    batch_size: int = 32
    tasks: tuple[str, ...] = ()
    metric: str = "acc"
    limit: int | None = None
    trust_code: bool = False  # lm-eval: run the folder's code (TargetConfig.lm_eval_trust_remote_code)

    def __post_init__(self) -> None:
        kind = kind_named(self.kind)
        if not isinstance(self.path, str) or not self.path:
            raise ClimbInputError(f"EvaluatorSpec.path must be a non-empty string, got {self.path!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w <= 0:
            raise ClimbInputError(f"EvaluatorSpec.weight must be a finite number > 0, got {w!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ClimbInputError(
                f"EvaluatorSpec.normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ClimbInputError(
                f"EvaluatorSpec.batch_size must be a positive integer, got {self.batch_size!r}"
            )
        object.__setattr__(self, "tasks", tuple(self.tasks))
        kind.check_spec(self)
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ClimbInputError(
                f"EvaluatorSpec.limit must be None or a positive integer, got {self.limit!r}"
            )
        if not isinstance(self.trust_code, bool):
            raise ClimbInputError(f"EvaluatorSpec.trust_code must be a bool, got {self.trust_code!r}")

    @property
    def evaluator_kind(self) -> EvaluatorKind:
        return kind_named(self.kind)

    @property
    def natural_direction(self) -> Direction:
        return self.evaluator_kind.natural_direction(self)

    @property
    def name(self) -> str:
        return self.evaluator_kind.label(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "weight": float(self.weight),
            "normalize": self.normalize,
            "batch_size": self.batch_size,
            # Only the kinds that need more carry more (lm-eval: tasks, metric, limit), so existing targets
            # keep their hashes (and cached runs).
            **self.evaluator_kind.spec_fields(self),
        }


@dataclass(frozen=True)
class TargetSpec:
    """Evaluators, their weights, and whether the combined score is to be minimized or maximized."""

    evaluators: tuple[EvaluatorSpec, ...]
    direction: str
    name: str = "target"

    def __post_init__(self) -> None:
        if not isinstance(self.evaluators, tuple) or not self.evaluators:
            raise ClimbInputError(f"TargetSpec.evaluators must be a non-empty tuple, got {self.evaluators!r}")
        for e in self.evaluators:
            if not isinstance(e, EvaluatorSpec):
                raise ClimbInputError(f"TargetSpec.evaluators must hold EvaluatorSpec, got {e!r}")
        if self.direction not in DIRECTIONS:
            raise ClimbInputError(f"TargetSpec.direction must be one of {DIRECTIONS}, got {self.direction!r}")
        names = [e.name for e in self.evaluators]
        if len(set(names)) != len(names):
            raise ClimbInputError(f"TargetSpec.evaluators repeat an evaluator: {names}")

    @classmethod
    def loss(cls, path: str | os.PathLike[str], name: str = "heldout_loss") -> TargetSpec:
        return cls((EvaluatorSpec(LOSS, str(path)),), Direction.MINIMIZE, name)

    @classmethod
    def multiple_choice(
        cls, path: str | os.PathLike[str], normalize: str = "char", name: str = "multiple_choice"
    ) -> TargetSpec:
        return cls(
            (EvaluatorSpec(MULTIPLE_CHOICE, str(path), normalize=normalize),), Direction.MAXIMIZE, name
        )

    @classmethod
    def combined(
        cls, evaluators: Sequence[EvaluatorSpec], direction: str, name: str = "combined"
    ) -> TargetSpec:
        return cls(tuple(evaluators), direction, name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetSpec:
        try:
            evaluators = tuple(EvaluatorSpec(**e) for e in data["evaluators"])
            return cls(evaluators, data["direction"], data.get("name", "target"))
        except (KeyError, TypeError) as exc:
            raise ClimbInputError(f"bad target spec {dict(data)!r}: {exc}") from exc

    def sign(self, evaluator: EvaluatorSpec) -> float:
        return 1.0 if evaluator.natural_direction == self.direction else -1.0

    def combine(self, values: Mapping[str, float]) -> float:
        """The score from per-evaluator values keyed by `EvaluatorSpec.name`."""
        return sum(e.weight * self.sign(e) * values[e.name] for e in self.evaluators)

    def is_better(self, a: float, b: float) -> bool:
        """Whether score `a` beats score `b` under this target's direction."""
        return Direction(self.direction).better(a, b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "direction": self.direction,
            "evaluators": [e.to_dict() for e in self.evaluators],
        }

    def content_hash(self) -> str:
        return content_hash(self.to_dict())

    def check_files(self) -> None:
        """Raise ClimbInputError naming the first evaluation file that is missing or empty."""
        for e in self.evaluators:
            e.evaluator_kind.check_files(e)

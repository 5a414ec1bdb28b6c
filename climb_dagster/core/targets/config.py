"""What the proxies are scored on, as the user configures it (validated before anything runs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.targets.kinds import EvaluatorKind, registered_kinds

# The target whose score is the base component (held-out loss) with at least one other.
COMBINED = "combined"


def target_kinds() -> tuple[str, ...]:
    """Every evaluator kind alone (documents_loss, mc_accuracy, lm_eval, ...), then combined."""
    return (*(k.target_kind for k in registered_kinds()), COMBINED)


def _kind_alone(target_kind: str) -> EvaluatorKind:
    return next(k for k in registered_kinds() if k.target_kind == target_kind)


@dataclass(frozen=True)
class TargetConfig:
    """What the proxies are scored on.

    documents_loss: mean next-token loss on held-out target documents (Parquet/JSONL with a text column),
    minimised. mc_accuracy: multiple-choice accuracy from an lm-evaluation-harness style JSONL (context,
    choices, gold), maximised. lm_eval: `lm_eval_metric` averaged over `lm_eval_tasks` run by
    lm-evaluation-harness from the local task folder `lm_eval_path` (YAML + data), maximised (minimised
    for perplexity-like metrics). combined: held-out loss with multiple choice and/or lm-eval,
    `loss_weight * loss - accuracy_weight * accuracy - lm_eval_weight * metric`, minimised.
    Every component that is configured is part of the score, whatever the kind.
    lm_eval_trust_remote_code: run the Python a task folder brings (`!function` tags, .py files, Python tasks,
    metric scripts); by default the folder is data and such a folder is refused (core/targets/task_folder.py).
    """

    kind: str = "documents_loss"
    documents_path: str | None = None
    mc_path: str | None = None
    loss_weight: float = 1.0
    accuracy_weight: float = 1.0
    max_eval_windows: int = 64
    lm_eval_path: str | None = None
    lm_eval_tasks: tuple[str, ...] = ()
    lm_eval_metric: str = "acc"
    lm_eval_weight: float = 1.0
    lm_eval_limit: int | None = None
    lm_eval_trust_remote_code: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lm_eval_tasks", tuple(self.lm_eval_tasks))
        kinds = target_kinds()
        if self.kind not in kinds:
            raise ClimbInputError(f"unknown target kind {self.kind!r}; expected one of {kinds}")
        if self.kind == COMBINED:
            base = [k for k in registered_kinds() if k.combined_base]
            others = [k for k in registered_kinds() if not k.combined_base]
            for k in base:
                k.require(self)
            if not any(k.configured(self) for k in others):
                needs = " or ".join(k.requirement for k in others)
                raise ClimbInputError(f"target kind {COMBINED!r} needs {needs}")
        else:
            _kind_alone(self.kind).require(self)
        for k in registered_kinds():
            k.check_config(self)
        if not isinstance(self.lm_eval_trust_remote_code, bool):
            raise ClimbInputError(
                f"lm_eval_trust_remote_code must be true or false, got {self.lm_eval_trust_remote_code!r}"
            )
        if self.max_eval_windows < 1:
            raise ClimbInputError(f"max_eval_windows must be >= 1, got {self.max_eval_windows}")

    def to_dict(self) -> dict:
        """The fields as JSON gives them back; the code opt-in only when set, so records written before it
        keep their hashes."""
        out = asdict(self) | {"lm_eval_tasks": list(self.lm_eval_tasks)}
        if not self.lm_eval_trust_remote_code:
            del out["lm_eval_trust_remote_code"]
        return out

    def components(self) -> tuple[EvaluatorKind, ...]:
        """The configured components, in registration order (every one is part of the score)."""
        return tuple(k for k in registered_kinds() if k.configured(self))

    @property
    def direction(self) -> Direction:
        if self.kind == COMBINED:
            return next(k for k in registered_kinds() if k.combined_base).target_direction(self)
        return _kind_alone(self.kind).target_direction(self)

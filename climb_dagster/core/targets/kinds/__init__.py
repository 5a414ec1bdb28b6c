"""Evaluator kinds: one extension point, one file per kind of target component.

`base.py` holds the `EvaluatorKind` protocol and the registry; `loss.py` (held-out loss), `multiple_choice.py`
and `lm_eval.py` (lm-evaluation-harness tasks) are the built-ins, registered in that order: the order a
prepared target lists its components and fingerprints their files.

Adding a kind: a file here that subclasses `EvaluatorKind` and decorates it with `@register_kind`, and its
import below. `EvaluatorSpec`/`TargetSpec`, `evaluate_target` and the pack path then take it; a user's
`TargetConfig` reaches it once it has a field for the kind's files (and the launchpad a target class).
"""

# The built-ins, in the order a prepared target lists them.
from climb_dagster.core.targets.kinds import loss, multiple_choice, lm_eval  # noqa: I001, F401
from climb_dagster.core.targets.kinds.base import (
    EvaluatorKind,
    kind_named,
    register_kind,
    registered_kinds,
    source_file,
    unregister_kind,
)
from climb_dagster.core.targets.kinds.lm_eval import LM_EVAL
from climb_dagster.core.targets.kinds.loss import LOSS
from climb_dagster.core.targets.kinds.multiple_choice import MULTIPLE_CHOICE

__all__ = [
    "LM_EVAL",
    "LOSS",
    "MULTIPLE_CHOICE",
    "EvaluatorKind",
    "kind_named",
    "register_kind",
    "registered_kinds",
    "source_file",
    "unregister_kind",
]

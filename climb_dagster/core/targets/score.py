"""Score trained proxies on a target: every evaluator of a TargetSpec, each by its kind (core/targets/kinds),
for one model or a pack at once.

Imported lazily (it imports torch through the proxy model).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.model import load_model, torch_threads
from climb_dagster.core.proxy.pack import PackedLlama
from climb_dagster.core.proxy.tokens import load_tokenizer
from climb_dagster.core.targets.spec import TargetSpec


def evaluate_components(
    model: Any, target: TargetSpec, tokenizer: Any = None, num_threads: int = 1
) -> dict[str, float]:
    """Each evaluator's raw value (loss in nats, accuracy in [0, 1]) keyed by `EvaluatorSpec.name`.

    Args:
        model: a LlamaForCausalLM, or a checkpoint directory (its tokenizer is loaded from it too).
        tokenizer: needed for multiple choice when `model` is a module.
        num_threads: torch intra-op threads while evaluating (restored afterwards).
    """
    if model is None:
        raise ClimbInputError("no model to evaluate (a failed proxy run has none)")
    target.check_files()
    if isinstance(model, str | os.PathLike):
        model_dir = Path(model)
        model = load_model(model_dir)
        if tokenizer is None and any(e.evaluator_kind.needs_tokenizer for e in target.evaluators):
            tokenizer = load_tokenizer(model_dir)
    with torch_threads(num_threads):
        values: dict[str, float] = {}
        for e in target.evaluators:
            value = e.evaluator_kind.score(model, e, tokenizer)
            if not math.isfinite(value):
                raise ClimbInputError(
                    f"evaluator {e.name} gave a non-finite value {value!r}: the model diverged"
                )
            values[e.name] = value
    return values


def evaluate_target(model: Any, target: TargetSpec, tokenizer: Any = None, num_threads: int = 1) -> float:
    """The target score of `model` (see core/targets/spec.py for how components combine)."""
    return target.combine(evaluate_components(model, target, tokenizer, num_threads))


def evaluate_pack_components(
    models: Sequence[torch.nn.Module], target: Any, tokenizer: Any = None, num_threads: int = 1
) -> list[dict[str, float]]:
    """`evaluate_components` of every model at once: the models (same sizes, same device) are stacked
    into one PackedLlama and each kind scores them together where it can (loss, multiple choice: one
    forward pass per batch for all of them). An lm-eval component runs per model instead (lm-evaluation-
    harness drives its own batches through one HF model), so a pack gets the same values as separate runs,
    without the pack's speed-up for that component."""
    target.check_files()
    device = models[0].lm_head.weight.device
    with torch_threads(num_threads), torch.no_grad():
        pack = PackedLlama(models).to(device).train(False)
        values: list[dict[str, float]] = [{} for _ in models]
        for e in target.evaluators:
            got = e.evaluator_kind.score_pack(pack, list(models), e, tokenizer)
            for j, value in enumerate(got):
                # A non-finite value marks that member's model as diverged; the caller fails only it.
                values[j][e.name] = value
    return values


def evaluate_pack(
    models: Sequence[torch.nn.Module], target: Any, tokenizer: Any = None, num_threads: int = 1
) -> list[float]:
    """The target score of each model (NaN where a component is not finite), evaluated as one pack."""
    out = []
    for values in evaluate_pack_components(models, target, tokenizer, num_threads):
        finite = all(math.isfinite(v) for v in values.values())
        out.append(target.combine(values) if finite else float("nan"))
    return out

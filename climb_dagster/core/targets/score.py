"""Score trained proxies on a target: every evaluator of a TargetSpec, for one model or a pack at once.

Imported lazily (it imports torch through the proxy model).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.model import torch_threads
from climb_dagster.core.proxy.pack import PackedLlama
from climb_dagster.core.proxy.tokens import load_tokenizer
from climb_dagster.core.targets import evaluators as ev
from climb_dagster.core.targets.lm_eval import run_lm_eval
from climb_dagster.core.targets.spec import LM_EVAL, LOSS, MULTIPLE_CHOICE, TargetSpec


def evaluate_components(
    model: Any, target: TargetSpec, tokenizer: Any = None, num_threads: int = 1
) -> dict[str, float]:
    """Each evaluator's raw value (loss in nats, accuracy in [0, 1]) keyed by `EvaluatorSpec.name`.

    Args:
        model: a LlamaForCausalLM, or a checkpoint directory (its tokenizer is loaded from it too).
        tokenizer: needed for multiple choice when `model` is a module.
        num_threads: torch intra-op threads while evaluating (restored afterwards).
    """
    from climb_dagster.core.proxy.model import torch_threads

    if model is None:
        raise ClimbInputError("no model to evaluate (a failed proxy run has none)")
    target.check_files()
    if isinstance(model, str | os.PathLike):
        from climb_dagster.core.proxy.model import load_model

        model_dir = Path(model)
        model = load_model(model_dir)
        if tokenizer is None and any(e.kind in (MULTIPLE_CHOICE, LM_EVAL) for e in target.evaluators):
            tokenizer = load_tokenizer(model_dir)
    with torch_threads(num_threads):
        values: dict[str, float] = {}
        for e in target.evaluators:
            if e.kind == LOSS:
                value = ev.eval_loss(model, ev.load_eval_windows(e.path), batch_size=e.batch_size)
            elif e.kind == LM_EVAL:

                value = run_lm_eval(
                    model, tokenizer, e.path, e.tasks, e.metric, e.limit, e.batch_size, e.trust_code
                )
            else:
                if tokenizer is None:
                    raise ClimbInputError(
                        f"evaluator {e.name} needs a tokenizer (pass tokenizer= or a model dir)"
                    )
                value = ev.eval_multiple_choice(
                    model, tokenizer, ev.load_multiple_choice(e.path), e.normalize
                )
            if not math.isfinite(value):
                raise ClimbInputError(
                    f"evaluator {e.name} gave a non-finite value {value!r}: the model diverged"
                )
            values[e.name] = value
    return values



def evaluate_target(model: Any, target: TargetSpec, tokenizer: Any = None, num_threads: int = 1) -> float:
    """The target score of `model` (see the module docstring for how components combine)."""
    return target.combine(evaluate_components(model, target, tokenizer, num_threads))


def evaluate_pack_components(
    models: Sequence[torch.nn.Module], target: Any, tokenizer: Any = None, num_threads: int = 1
) -> list[dict[str, float]]:
    """`evaluate_components` of every model at once: the models (same sizes, same device) are stacked
    into one PackedLlama and each evaluation batch is one forward pass for all of them. An lm-eval
    component runs per model instead (lm-evaluation-harness drives its own batches through one HF model),
    so a pack gets the same values as separate runs, without the pack's speed-up for that component."""

    target.check_files()
    device = models[0].lm_head.weight.device
    m = len(models)
    with torch_threads(num_threads), torch.no_grad():
        pack = PackedLlama(models).to(device).train(False)
        values: list[dict[str, float]] = [{} for _ in models]
        for e in target.evaluators:
            if e.kind == LOSS:
                got = _pack_eval_loss(pack, ev.load_eval_windows(e.path), e.batch_size, device)
            elif e.kind == LM_EVAL:

                got = [
                    run_lm_eval(
                        model, tokenizer, e.path, e.tasks, e.metric, e.limit, e.batch_size, e.trust_code
                    )
                    for model in models
                ]
            else:
                if tokenizer is None:
                    raise ClimbInputError(f"evaluator {e.name} needs a tokenizer")
                items = ev.load_multiple_choice(e.path)
                block = int(models[0].config.max_position_embeddings)
                per_member: list[list[list[tuple[float, int]]]] = [[] for _ in models]
                for item in items:
                    ids, spans = ev.choice_batch(tokenizer, item, block)
                    x = ids[:, :-1].to(device).unsqueeze(0).expand(m, -1, -1)
                    logits = pack.logits(x)
                    for j in range(m):
                        per_member[j].append(ev.span_logprobs(logits[j], ids, spans))
                got = [ev.choice_accuracy(items, lps, e.normalize) for lps in per_member]
            for j, value in enumerate(got):
                # A non-finite value marks that member's model as diverged; the caller fails only it.
                values[j][e.name] = value
    return values



def _pack_eval_loss(
    pack: PackedLlama, windows: np.ndarray, batch_size: int, device: torch.device
) -> list[float]:
    vocab = pack.param("model.embed_tokens.weight").shape[1]
    if int(windows.max()) >= vocab:
        raise ClimbInputError(
            f"evaluation windows hold token id {int(windows.max())} >= model vocab_size {vocab}"
        )
    m = pack.size
    total = torch.zeros(m, dtype=torch.float64, device=device)
    count = 0
    for start in range(0, windows.shape[0], batch_size):
        batch = torch.from_numpy(windows[start : start + batch_size].astype(np.int64)).to(device)
        x = batch[:, :-1].unsqueeze(0).expand(m, -1, -1)
        y = batch[:, 1:].unsqueeze(0).expand(m, -1, -1)
        n = y.shape[1] * y.shape[2]
        total += pack.losses(x, y, fused_head=device.type == "cpu").double() * n
        count += n
    return (total / count).tolist()



def evaluate_pack(
    models: Sequence[torch.nn.Module], target: Any, tokenizer: Any = None, num_threads: int = 1
) -> list[float]:
    """The target score of each model (NaN where a component is not finite), evaluated as one pack."""
    import math

    out = []
    for values in evaluate_pack_components(models, target, tokenizer, num_threads):
        finite = all(math.isfinite(v) for v in values.values())
        out.append(target.combine(values) if finite else float("nan"))
    return out

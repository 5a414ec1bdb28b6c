"""lm-evaluation-harness as a target component: local task YAML + local data files, no hub access.

A task folder holds lm-eval task YAML files and their data, e.g.

    piqa_local.yaml      task: piqa_local
                         dataset_path: json
                         dataset_kwargs: {data_files: {validation: piqa_valid.jsonl}}
                         validation_split: validation
                         output_type: multiple_choice
                         doc_to_text: "Question: {{goal}}\nAnswer:"
                         doc_to_choice: "{{[sol1, sol2]}}"
                         doc_to_target: label
                         metric_list: [{metric: acc}, {metric: acc_norm}]
    piqa_valid.jsonl

Relative `data_files` are resolved against the task folder. The folder is data: code in it is refused
(core/targets/task_folder.py) unless the target trusts it. The proxy is evaluated in memory through
lm-eval's HFLM wrapper (the same weights its Hugging Face checkpoint holds); the component's value is the
chosen metric averaged over the listed tasks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.targets.task_folder import check_task_folder, sandbox_templates

# lm-eval metrics where lower is better; every other metric (acc, acc_norm, f1, exact_match, ...) is maximised.
LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")


def metric_direction(metric: str) -> Direction:
    return Direction.MINIMIZE if metric in LOWER_IS_BETTER else Direction.MAXIMIZE


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    task_dir: str | os.PathLike[str],
    tasks: Sequence[str],
    metric: str = "acc",
    limit: int | None = None,
    batch_size: int = 32,
    trust_code: bool = False,
) -> float:
    """`metric` of `model` averaged over `tasks` from the local task folder (offline, seeded), checked again
    here (check_task_folder) before lm-eval reads it: a folder changed in storage is refused too."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    folder = check_task_folder(task_dir, tasks, trust_code).root.resolve()
    if tokenizer is None:
        raise ClimbInputError(f"lm-eval tasks {list(tasks)} need the proxy's tokenizer")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    sandbox_templates()
    lm = HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size,
        device=str(next(model.parameters()).device),
        max_length=int(model.config.max_position_embeddings),
    )
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ClimbInputError(f"lm-eval tasks {unknown} are not defined in {str(folder)!r}")
    # Relative data_files in the YAML resolve against the task folder.
    with contextlib.chdir(folder), _named_security_errors(folder):
        out = simple_evaluate(
            model=lm,
            tasks=list(tasks),
            task_manager=manager,
            limit=limit,
            bootstrap_iters=0,
            log_samples=False,
            verbosity="ERROR",
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    values = []
    for task in tasks:
        result = out["results"].get(task, {})
        keys = [k for k in result if k.split(",")[0] == metric]
        if not keys:
            have = sorted({k.split(",")[0] for k in result if "," in k and "stderr" not in k})
            raise ClimbInputError(f"lm-eval task {task!r} reports no metric {metric!r}; it has {have}")
        values.append(float(result[keys[0]]))
    return sum(values) / len(values)


@contextlib.contextmanager
def _named_security_errors(folder: Path):
    """A template stopped by the sandbox (task_folder.sandbox_templates) as an error naming the folder."""
    from jinja2.exceptions import SecurityError

    try:
        yield
    except SecurityError as exc:
        raise ClimbInputError(
            f"lm-eval task folder {str(folder)!r}: a template reached for Python internals ({exc})"
        ) from exc

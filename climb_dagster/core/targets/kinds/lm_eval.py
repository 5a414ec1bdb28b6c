"""lm-evaluation-harness tasks: a metric averaged over tasks run from a local folder of task YAML and data
(`core/targets/lm_eval.py`); the only kind whose evaluation set is a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.targets.kinds.base import EvaluatorKind, register_kind
from climb_dagster.core.targets.lm_eval import check_task_dir, metric_direction, run_lm_eval

if TYPE_CHECKING:
    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.spec import EvaluatorSpec

LM_EVAL = "lm_eval"
TASKS_FOLDER = "lm_eval_tasks"


@register_kind
class LmEval(EvaluatorKind):
    name = LM_EVAL
    target_kind = "lm_eval"
    requirement = "lm_eval_tasks"
    # Of accuracy-like metrics; perplexity-like ones are minimised (metric_direction).
    natural = Direction.MAXIMIZE
    folder = True
    needs_tokenizer = True

    def natural_direction(self, spec: EvaluatorSpec) -> Direction:
        return metric_direction(spec.metric)

    def check_spec(self, spec: EvaluatorSpec) -> None:
        if not spec.tasks or not all(isinstance(t, str) and t for t in spec.tasks):
            raise ClimbInputError(f"EvaluatorSpec.tasks must name lm-eval tasks, got {spec.tasks!r}")

    def label(self, spec: EvaluatorSpec) -> str:
        return f"{spec.kind}:{'+'.join(spec.tasks)}:{spec.metric}"

    def spec_fields(self, spec: EvaluatorSpec) -> dict[str, Any]:
        return {"tasks": list(spec.tasks), "metric": spec.metric, "limit": spec.limit}

    def check_files(self, spec: EvaluatorSpec) -> None:
        check_task_dir(Path(spec.path), spec.tasks)

    def configured(self, target: TargetConfig) -> bool:
        return bool(target.lm_eval_tasks)

    def require(self, target: TargetConfig) -> None:
        self._check_pair(target)

    def check_config(self, target: TargetConfig) -> None:
        if target.lm_eval_tasks:
            self._check_pair(target)

    def _check_pair(self, target: TargetConfig) -> None:
        if not (target.lm_eval_path and target.lm_eval_tasks):
            raise ClimbInputError(
                f"lm-eval target needs lm_eval_path (task folder) and lm_eval_tasks; got "
                f"lm_eval_path={target.lm_eval_path!r}, lm_eval_tasks={list(target.lm_eval_tasks)}"
            )

    def target_direction(self, target: TargetConfig) -> Direction:
        return metric_direction(target.lm_eval_metric)

    def check_source(self, target: TargetConfig, storage_options: dict[str, Any] | None) -> None:
        if target.lm_eval_path:
            _task_folder(target.lm_eval_path, storage_options)

    def load(
        self, target: TargetConfig, tokenizer_dir: Path, block_size: int, storage_options: dict[str, Any] | None
    ) -> Path:
        """A local copy of the task folder, checked to hold YAML for the named tasks."""
        src = _task_folder(str(target.lm_eval_path), storage_options)
        return check_task_dir(storage.local_dir_copy(src), target.lm_eval_tasks)

    def write(self, loaded: Path, target: TargetConfig, out: UPath, digest: Any) -> dict[str, Any]:
        for f in sorted(p for p in loaded.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(loaded)).encode())
            digest.update(f.read_bytes())
        dest = out / TASKS_FOLDER
        storage.upload_dir(loaded, dest)
        return {
            "path": str(dest),
            "weight": target.lm_eval_weight,
            "tasks": target.lm_eval_tasks,
            "metric": target.lm_eval_metric,
            "limit": target.lm_eval_limit,
        }

    def score(self, model: Any, spec: EvaluatorSpec, tokenizer: Any) -> float:
        # lm-evaluation-harness drives its own batches through one HF model, so a pack runs it per member.
        return run_lm_eval(model, tokenizer, spec.path, spec.tasks, spec.metric, spec.limit, spec.batch_size)


def _task_folder(path: str, storage_options: dict[str, Any] | None) -> UPath:
    """An lm-eval target is a folder (task YAML + data), where every other evaluation set is one file."""
    p = storage.make_path(path, storage_options, what="lm-eval task folder")
    if not p.exists():
        raise ClimbInputError(f"lm-eval task folder not found: {path}")
    if not p.is_dir():
        raise ClimbInputError(f"lm-eval task folder {path} is a file; give the folder of task YAML and data")
    return p

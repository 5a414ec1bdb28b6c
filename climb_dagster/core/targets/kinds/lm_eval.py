"""lm-evaluation-harness tasks: a metric averaged over tasks run from a local folder of task YAML and data
(`core/targets/lm_eval.py`); the only kind whose evaluation set is a folder."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.targets.kinds.base import EvaluatorKind, register_kind
from climb_dagster.core.targets.lm_eval import metric_direction, run_lm_eval
from climb_dagster.core.targets.task_folder import TaskFolder, check_task_folder, copy_task_folder

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
    copy_kind = TASKS_FOLDER
    needs_tokenizer = True

    def natural_direction(self, spec: EvaluatorSpec) -> Direction:
        return metric_direction(spec.metric)

    def check_spec(self, spec: EvaluatorSpec) -> None:
        if not spec.tasks or not all(isinstance(t, str) and t for t in spec.tasks):
            raise ClimbInputError(f"EvaluatorSpec.tasks must name lm-eval tasks, got {spec.tasks!r}")

    def label(self, spec: EvaluatorSpec) -> str:
        return f"{spec.kind}:{'+'.join(spec.tasks)}:{spec.metric}"

    def spec_fields(self, spec: EvaluatorSpec) -> dict[str, Any]:
        # The code opt-in only when set, so targets recorded before it keep their hashes (and cached runs).
        trusted = {"trust_code": True} if spec.trust_code else {}
        return {"tasks": list(spec.tasks), "metric": spec.metric, "limit": spec.limit, **trusted}

    def check_files(self, spec: EvaluatorSpec) -> None:
        # The stored copy is checked again before the harness reads it (it may come from another machine).
        check_task_folder(Path(spec.path), spec.tasks, spec.trust_code)

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

    def check_source(
        self, target: TargetConfig, storage_options: dict[str, Any] | None, storage_root: UPath | None = None
    ) -> None:
        if target.lm_eval_tasks:
            _local_checked(target, storage_options, storage_root)
        elif target.lm_eval_path:
            _task_folder(target.lm_eval_path, storage_options)

    def load(
        self,
        target: TargetConfig,
        tokenizer_dir: Path,
        block_size: int,
        storage_options: dict[str, Any] | None,
        storage_root: UPath | None = None,
    ) -> TaskFolder:
        """A local copy of the task folder, checked as data (unless trusted) and to define every named task."""
        return _local_checked(target, storage_options, storage_root)

    def write(self, loaded: TaskFolder, target: TargetConfig, out: UPath, digest: Any) -> dict[str, Any]:
        """Only the checked files are copied next to the assets; their bytes join the fingerprint."""
        dest = out / TASKS_FOLDER
        with tempfile.TemporaryDirectory() as tmp:
            local = copy_task_folder(loaded, Path(tmp) / TASKS_FOLDER)
            for f in sorted(p for p in local.rglob("*") if p.is_file()):
                digest.update(str(f.relative_to(local)).encode())
                digest.update(f.read_bytes())
            storage.upload_dir(local, dest, kind=TASKS_FOLDER)
        return {
            "path": str(dest),
            "weight": target.lm_eval_weight,
            "tasks": target.lm_eval_tasks,
            "metric": target.lm_eval_metric,
            "limit": target.lm_eval_limit,
            "trust_code": target.lm_eval_trust_remote_code,
        }

    def score(self, model: Any, spec: EvaluatorSpec, tokenizer: Any) -> float:
        # lm-evaluation-harness drives its own batches through one HF model, so a pack runs it per member.
        return run_lm_eval(
            model, tokenizer, spec.path, spec.tasks, spec.metric, spec.limit, spec.batch_size, spec.trust_code
        )


def _local_checked(
    target: TargetConfig, storage_options: dict[str, Any] | None, storage_root: UPath | None
) -> TaskFolder:
    """The task folder, local and checked: within the copy cap, holding neither the storage root nor the
    cache, data rather than code (unless trusted), defining every named task."""
    src = _task_folder(str(target.lm_eval_path), storage_options)
    storage.check_copy_source(src, TASKS_FOLDER, what="lm-eval task folder", storage_root=storage_root)
    local = storage.local_dir_copy(src, kind=TASKS_FOLDER)
    return check_task_folder(local, target.lm_eval_tasks, target.lm_eval_trust_remote_code)


def _task_folder(path: str, storage_options: dict[str, Any] | None) -> UPath:
    """An lm-eval target is a folder (task YAML + data), where every other evaluation set is one file."""
    p = storage.make_path(path, storage_options, what="lm-eval task folder")
    if not p.exists():
        raise ClimbInputError(f"lm-eval task folder not found: {path}")
    if not p.is_dir():
        raise ClimbInputError(f"lm-eval task folder {path} is a file; give the folder of task YAML and data")
    return p

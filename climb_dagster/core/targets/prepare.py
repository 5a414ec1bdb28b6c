"""Turn an experiment's target (held-out documents and/or a multiple-choice JSONL) into the evaluator every
proxy is scored with, stored next to the assets so that step pods on other machines read the same files."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from upath import UPath

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.io.corpus import CorpusConfig, read_drop
from climb_dagster.core.proxy.tokens import TokenStore
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.core.targets.evaluators import build_eval_windows, parse_multiple_choice
from climb_dagster.core.targets.spec import LM_EVAL, LOSS, MULTIPLE_CHOICE, EvaluatorSpec, TargetSpec
from climb_dagster.core.targets.task_folder import TaskFolder, check_task_folder, copy_task_folder


def _source(path: str, storage_options: dict[str, Any] | None) -> UPath:
    p = storage.make_path(path, storage_options, what="target evaluation set")
    if not p.exists():
        raise ClimbInputError(f"target evaluation set not found: {path}")
    if p.is_dir():
        raise ClimbInputError(f"target evaluation set {path} is a directory; give the path of one file")
    if p.is_file() and p.stat().st_size == 0:
        raise ClimbInputError(f"target evaluation set is empty: {path}")
    return p


def check_target(
    target: TargetConfig, storage_options: dict[str, Any] | None = None, storage_root: UPath | None = None
) -> None:
    """Fail early, naming the path, when an evaluation set is missing, empty, a folder or (multiple
    choice) malformed, or an lm-eval task folder is refused (see `_lm_eval_local`)."""
    if target.documents_path:
        _source(target.documents_path, storage_options)
    if target.mc_path:
        _mc_items(target.mc_path, storage_options)
    if target.lm_eval_tasks:
        _lm_eval_local(target, storage_options, storage_root)
    elif target.lm_eval_path:
        _task_folder(target.lm_eval_path, storage_options)


def _mc_items(path: str, storage_options: dict[str, Any] | None) -> tuple[bytes, list]:

    data = _source(path, storage_options).read_bytes()
    return data, parse_multiple_choice(data, path)


def _task_folder(path: str, storage_options: dict[str, Any] | None) -> UPath:
    """An lm-eval target is a folder (task YAML + data), where every other evaluation set is one file."""
    p = storage.make_path(path, storage_options, what="lm-eval task folder")
    if not p.exists():
        raise ClimbInputError(f"lm-eval task folder not found: {path}")
    if not p.is_dir():
        raise ClimbInputError(f"lm-eval task folder {path} is a file; give the folder of task YAML and data")
    return p


def _lm_eval_local(
    target: TargetConfig, storage_options: dict[str, Any] | None, storage_root: UPath | None
) -> TaskFolder:
    """The lm-eval task folder, local and checked: within the copy cap, holding neither the storage root nor
    the cache, data rather than code (unless trusted), defining every named task."""
    src = _task_folder(str(target.lm_eval_path), storage_options)
    storage.check_copy_source(src, "lm_eval_tasks", what="lm-eval task folder", storage_root=storage_root)
    local = storage.local_dir_copy(src, kind="lm_eval_tasks")
    return check_task_folder(local, target.lm_eval_tasks, target.lm_eval_trust_remote_code)


def prepare_target(
    target: TargetConfig,
    tokenizer_dir: Path,
    block_size: int,
    out: UPath,
    storage_options: dict[str, Any] | None = None,
    storage_root: UPath | None = None,
) -> dict[str, Any]:
    """Tokenize held-out documents into fixed windows and copy the MC set and the checked files of an lm-eval
    task folder under `out`; return the TargetSpec (as a dict) whose evaluator paths point there."""
    import hashlib


    evaluators = []
    digest = hashlib.sha256()
    # Every input is validated before anything is written under `out`.
    mc_data = _mc_items(target.mc_path, storage_options)[0] if target.mc_path else None
    lm_eval_dir = _lm_eval_local(target, storage_options, storage_root) if target.lm_eval_tasks else None
    if target.documents_path:
        src = _source(target.documents_path, storage_options)
        docs, _ = read_drop(src, "target", CorpusConfig(id_column=None))
        with tempfile.TemporaryDirectory() as tmp:
            local = build_eval_windows(
                docs["text"].to_list(),
                tokenizer_dir,
                Path(tmp) / "heldout.npy",
                block_size,
                target.max_eval_windows,
            )
            windows = local.read_bytes()
            digest.update(windows)
            storage.atomic_write_bytes(out / "heldout_windows.npy", windows)
        evaluators.append(EvaluatorSpec(LOSS, str(out / "heldout_windows.npy"), weight=target.loss_weight))
    if mc_data is not None:
        digest.update(mc_data)
        storage.atomic_write_bytes(out / "multiple_choice.jsonl", mc_data)
        evaluators.append(
            EvaluatorSpec(MULTIPLE_CHOICE, str(out / "multiple_choice.jsonl"), weight=target.accuracy_weight)
        )
    if lm_eval_dir is not None:
        evaluators.append(_prepare_lm_eval(target, lm_eval_dir, out, digest))
    spec = TargetSpec(tuple(evaluators), target.direction, name=target.kind)
    # The content of the evaluation files keys the proxy cache: new target data never reuses old scores.
    return spec.to_dict() | {"fingerprint": digest.hexdigest()[:16]}


def _prepare_lm_eval(target: TargetConfig, folder: TaskFolder, out: UPath, digest: Any):
    """Copy the checked files of the lm-eval task folder (only those) next to the assets; their bytes join the
    fingerprint."""
    dest = out / "lm_eval_tasks"
    with tempfile.TemporaryDirectory() as tmp:
        local = copy_task_folder(folder, Path(tmp) / "lm_eval_tasks")
        for f in sorted(p for p in local.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(local)).encode())
            digest.update(f.read_bytes())
        storage.upload_dir(local, dest, kind="lm_eval_tasks")
    return EvaluatorSpec(
        LM_EVAL,
        str(dest),
        weight=target.lm_eval_weight,
        tasks=target.lm_eval_tasks,
        metric=target.lm_eval_metric,
        limit=target.lm_eval_limit,
        trust_code=target.lm_eval_trust_remote_code,
    )


def open_token_store(path: str, storage_options: dict[str, Any] | None = None):

    local = storage.local_dir_copy(storage.make_path(path, storage_options), kind="token_store")
    return TokenStore.open(local)


def _local_target(spec: dict[str, Any], storage_options: dict[str, Any] | None) -> Any:
    """The TargetSpec of `spec` with its evaluation files (an lm-eval task folder: the whole folder)
    fetched to local disk once."""

    def fetch(e: dict[str, Any]) -> str:
        path = storage.make_path(e["path"], storage_options)
        if e["kind"] == LM_EVAL:
            return str(storage.local_dir_copy(path, kind="lm_eval_tasks"))
        return str(storage.local_copy(path))

    local = {k: v for k, v in spec.items() if k != "fingerprint"}
    local["evaluators"] = [{**e, "path": fetch(e)} for e in spec["evaluators"]]
    return TargetSpec.from_dict(local)


def target_evaluator(
    spec: dict[str, Any], tokenizer: Any, num_threads: int, storage_options: dict[str, Any] | None = None
) -> Callable[[Any], float]:
    """`evaluate(model) -> score` with the evaluation files fetched to local disk once."""
    from climb_dagster.core.targets.score import evaluate_target

    target = _local_target(spec, storage_options)
    return lambda model: evaluate_target(model, target, tokenizer, num_threads)


def target_pack_evaluator(
    spec: dict[str, Any], tokenizer: Any, num_threads: int, storage_options: dict[str, Any] | None = None
) -> Callable[[list[Any]], list[float]]:
    """`evaluate_many(models) -> scores`: the models of a pack scored as one batched model on their device;
    a model with a non-finite component gets NaN (its run is then marked failed)."""
    from climb_dagster.core.targets.score import evaluate_pack

    target = _local_target(spec, storage_options)
    return lambda models: evaluate_pack(models, target, tokenizer, num_threads)

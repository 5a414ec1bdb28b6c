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
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.core.targets.evaluators import build_eval_windows, parse_multiple_choice
from climb_dagster.core.targets.lm_eval import check_task_dir
from climb_dagster.core.targets.spec import LM_EVAL, LOSS, MULTIPLE_CHOICE, EvaluatorSpec, TargetSpec


def _source(path: str, storage_options: dict[str, Any] | None) -> UPath:
    p = storage.make_path(path, storage_options, what="target evaluation set")
    if not p.exists():
        raise ClimbInputError(f"target evaluation set not found: {path}")
    if p.is_dir():
        raise ClimbInputError(f"target evaluation set {path} is a directory; give the path of one file")
    if p.is_file() and p.stat().st_size == 0:
        raise ClimbInputError(f"target evaluation set is empty: {path}")
    return p


def check_target(target: TargetConfig, storage_options: dict[str, Any] | None = None) -> None:
    """Fail early, naming the path, when an evaluation set is missing, empty, a folder or (multiple
    choice) malformed."""
    if target.documents_path:
        _source(target.documents_path, storage_options)
    if target.mc_path:
        _mc_items(target.mc_path, storage_options)
    if target.lm_eval_path:
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


def _lm_eval_local(target: TargetConfig, storage_options: dict[str, Any] | None) -> Path:
    """A local copy of the lm-eval task folder, checked to hold YAML for the named tasks."""

    src = _task_folder(str(target.lm_eval_path), storage_options)
    return check_task_dir(storage.local_dir_copy(src), target.lm_eval_tasks)


def prepare_target(
    target: TargetConfig,
    tokenizer_dir: Path,
    block_size: int,
    out: UPath,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenize held-out documents into fixed windows and copy the MC set under `out`; return the
    TargetSpec (as a dict) whose evaluator paths point there."""
    import hashlib


    evaluators = []
    digest = hashlib.sha256()
    # Every input is validated before anything is written under `out`.
    mc_data = _mc_items(target.mc_path, storage_options)[0] if target.mc_path else None
    lm_eval_dir = _lm_eval_local(target, storage_options) if target.lm_eval_tasks else None
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


def _prepare_lm_eval(target: TargetConfig, local: Path, out: UPath, digest: Any):
    """Copy the (checked, local) lm-eval task folder next to the assets; its bytes join the fingerprint."""

    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(local)).encode())
        digest.update(f.read_bytes())
    dest = out / "lm_eval_tasks"
    storage.upload_dir(local, dest)
    return EvaluatorSpec(
        LM_EVAL,
        str(dest),
        weight=target.lm_eval_weight,
        tasks=target.lm_eval_tasks,
        metric=target.lm_eval_metric,
        limit=target.lm_eval_limit,
    )


def open_token_store(path: str, storage_options: dict[str, Any] | None = None):
    """The token store at `path` (local or s3://), read through local copies: the index folder and, for a store
    indexed over drops, each drop's token folder it names (copied once per machine, then memory-mapped)."""

    def local(ref: str) -> Path:
        return storage.local_dir_copy(storage.make_path(ref, storage_options))

    return TokenStore.open(local(path), resolve=local)


def _local_target(spec: dict[str, Any], storage_options: dict[str, Any] | None) -> Any:
    """The TargetSpec of `spec` with its evaluation files (an lm-eval task folder: the whole folder)
    fetched to local disk once."""

    def fetch(e: dict[str, Any]) -> str:
        path = storage.make_path(e["path"], storage_options)
        return str(storage.local_dir_copy(path) if e["kind"] == LM_EVAL else storage.local_copy(path))

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

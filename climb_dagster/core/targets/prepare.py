"""Turn an experiment's target (held-out documents, a multiple-choice JSONL, lm-eval tasks: each configured
evaluator kind) into the evaluator every proxy is scored with, stored next to the assets so that step pods on
other machines read the same files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from upath import UPath

from climb_dagster.core.io import storage
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.core.targets.kinds import kind_named, registered_kinds
from climb_dagster.core.targets.spec import EvaluatorSpec, TargetSpec


def check_target(
    target: TargetConfig, storage_options: dict[str, Any] | None = None, storage_root: UPath | None = None
) -> None:
    """Fail early, naming the path, when an evaluation set is missing, empty, a folder where a file is
    expected (or a file where a folder is), malformed (multiple choice), or an lm-eval task folder is refused
    (code, data outside it, undefined tasks, over its copy cap, holding the storage root)."""
    for kind in registered_kinds():
        kind.check_source(target, storage_options, storage_root)


def prepare_target(
    target: TargetConfig,
    tokenizer_dir: Path,
    block_size: int,
    out: UPath,
    storage_options: dict[str, Any] | None = None,
    storage_root: UPath | None = None,
) -> dict[str, Any]:
    """Prepare every configured component under `out` (held-out documents tokenized into fixed windows, the
    MC set and the lm-eval task folder copied); return the TargetSpec (as a dict) whose evaluator paths
    point there."""
    # Every input is validated before anything is written under `out`.
    loaded = [
        (kind, kind.load(target, tokenizer_dir, block_size, storage_options, storage_root))
        for kind in target.components()
    ]
    digest = hashlib.sha256()
    evaluators = [EvaluatorSpec(kind.name, **kind.write(data, target, out, digest)) for kind, data in loaded]
    spec = TargetSpec(tuple(evaluators), target.direction, name=target.kind)
    # The content of the evaluation files keys the proxy cache: new target data never reuses old scores.
    return spec.to_dict() | {"fingerprint": digest.hexdigest()[:16]}


def open_token_store(path: str, storage_options: dict[str, Any] | None = None):
    """The token store at `path` (local or s3://), read through local copies: the index folder and, for a store
    indexed over drops, each drop's token folder it names (copied once per machine, then memory-mapped)."""

    def local(ref: str) -> Path:
        return storage.local_dir_copy(storage.make_path(ref, storage_options), kind="token_store")

    return TokenStore.open(local(path), resolve=local)


def _local_target(spec: dict[str, Any], storage_options: dict[str, Any] | None) -> Any:
    """The TargetSpec of `spec` with its evaluation files (a folder kind, e.g. lm-eval: the whole folder)
    fetched to local disk once."""

    def fetch(e: dict[str, Any]) -> str:
        path = storage.make_path(e["path"], storage_options)
        kind = kind_named(e["kind"])
        return str(storage.local_dir_copy(path, kind=kind.copy_kind) if kind.folder else storage.local_copy(path))

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

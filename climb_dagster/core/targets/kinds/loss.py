"""Held-out loss: mean next-token loss (nats) on fixed windows tokenized from the target documents."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from upath import UPath

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.targets.evaluators import build_eval_windows, eval_loss, load_eval_windows
from climb_dagster.core.targets.kinds.base import EvaluatorKind, register_kind, source_file

if TYPE_CHECKING:
    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.spec import EvaluatorSpec

LOSS = "loss"
WINDOWS_FILE = "heldout_windows.npy"


@register_kind
class Loss(EvaluatorKind):
    name = LOSS
    target_kind = "documents_loss"
    requirement = "documents_path (held-out target documents)"
    natural = Direction.MINIMIZE
    combined_base = True

    def configured(self, target: TargetConfig) -> bool:
        return bool(target.documents_path)

    def check_source(
        self, target: TargetConfig, storage_options: dict[str, Any] | None, storage_root: UPath | None = None
    ) -> None:
        if target.documents_path:
            source_file(target.documents_path, storage_options)

    def load(
        self,
        target: TargetConfig,
        tokenizer_dir: Path,
        block_size: int,
        storage_options: dict[str, Any] | None,
        storage_root: UPath | None = None,
    ) -> bytes:
        """The documents tokenized into `max_eval_windows` windows of block_size+1 tokens (.npy bytes)."""
        from climb_dagster.core.io.corpus import CorpusConfig, read_drop

        src = source_file(str(target.documents_path), storage_options)
        docs, _ = read_drop(src, "target", CorpusConfig(id_column=None))
        with tempfile.TemporaryDirectory() as tmp:
            local = build_eval_windows(
                docs["text"].to_list(), tokenizer_dir, Path(tmp) / "heldout.npy", block_size, target.max_eval_windows
            )
            return local.read_bytes()

    def write(self, loaded: bytes, target: TargetConfig, out: UPath, digest: Any) -> dict[str, Any]:
        digest.update(loaded)
        storage.atomic_write_bytes(out / WINDOWS_FILE, loaded)
        return {"path": str(out / WINDOWS_FILE), "weight": target.loss_weight}

    def score(self, model: Any, spec: EvaluatorSpec, tokenizer: Any) -> float:
        return eval_loss(model, load_eval_windows(spec.path), batch_size=spec.batch_size)

    def score_pack(self, pack: Any, models: list[Any], spec: EvaluatorSpec, tokenizer: Any) -> list[float]:
        """Every member's loss from one forward pass per batch of windows."""
        import torch

        windows = load_eval_windows(spec.path)
        device = models[0].lm_head.weight.device
        vocab = pack.param("model.embed_tokens.weight").shape[1]
        if int(windows.max()) >= vocab:
            raise ClimbInputError(
                f"evaluation windows hold token id {int(windows.max())} >= model vocab_size {vocab}"
            )
        m = pack.size
        total = torch.zeros(m, dtype=torch.float64, device=device)
        count = 0
        for start in range(0, windows.shape[0], spec.batch_size):
            batch = torch.from_numpy(windows[start : start + spec.batch_size].astype(np.int64)).to(device)
            x = batch[:, :-1].unsqueeze(0).expand(m, -1, -1)
            y = batch[:, 1:].unsqueeze(0).expand(m, -1, -1)
            n = y.shape[1] * y.shape[2]
            total += pack.losses(x, y, fused_head=device.type == "cpu").double() * n
            count += n
        return (total / count).tolist()

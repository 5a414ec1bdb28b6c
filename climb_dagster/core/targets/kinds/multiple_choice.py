"""Multiple choice: accuracy on lm-evaluation-harness style items (context, choices, gold), by the
normalised log-likelihood of each choice."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.targets import evaluators as ev
from climb_dagster.core.targets.kinds.base import EvaluatorKind, register_kind, source_file

if TYPE_CHECKING:
    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.spec import EvaluatorSpec

MULTIPLE_CHOICE = "multiple_choice"
ITEMS_FILE = "multiple_choice.jsonl"


@register_kind
class MultipleChoice(EvaluatorKind):
    name = MULTIPLE_CHOICE
    target_kind = "mc_accuracy"
    requirement = "mc_path (a JSONL of context/choices/gold)"
    natural = Direction.MAXIMIZE
    needs_tokenizer = True

    def configured(self, target: TargetConfig) -> bool:
        return bool(target.mc_path)

    def check_source(
        self, target: TargetConfig, storage_options: dict[str, Any] | None, storage_root: UPath | None = None
    ) -> None:
        if target.mc_path:
            _items(target.mc_path, storage_options)

    def load(
        self,
        target: TargetConfig,
        tokenizer_dir: Path,
        block_size: int,
        storage_options: dict[str, Any] | None,
        storage_root: UPath | None = None,
    ) -> bytes:
        return _items(str(target.mc_path), storage_options)

    def write(self, loaded: bytes, target: TargetConfig, out: UPath, digest: Any) -> dict[str, Any]:
        digest.update(loaded)
        storage.atomic_write_bytes(out / ITEMS_FILE, loaded)
        return {"path": str(out / ITEMS_FILE), "weight": target.accuracy_weight}

    def score(self, model: Any, spec: EvaluatorSpec, tokenizer: Any) -> float:
        if tokenizer is None:
            raise ClimbInputError(f"evaluator {spec.name} needs a tokenizer (pass tokenizer= or a model dir)")
        return ev.eval_multiple_choice(model, tokenizer, ev.load_multiple_choice(spec.path), spec.normalize)

    def score_pack(self, pack: Any, models: list[Any], spec: EvaluatorSpec, tokenizer: Any) -> list[float]:
        """Each item's choices in one forward pass for every member."""
        if tokenizer is None:
            raise ClimbInputError(f"evaluator {spec.name} needs a tokenizer")
        items = ev.load_multiple_choice(spec.path)
        device = models[0].lm_head.weight.device
        block = int(models[0].config.max_position_embeddings)
        m = len(models)
        per_member: list[list[list[tuple[float, int]]]] = [[] for _ in models]
        for item in items:
            ids, spans = ev.choice_batch(tokenizer, item, block)
            x = ids[:, :-1].to(device).unsqueeze(0).expand(m, -1, -1)
            logits = pack.logits(x)
            for j in range(m):
                per_member[j].append(ev.span_logprobs(logits[j], ids, spans))
        return [ev.choice_accuracy(items, lps, spec.normalize) for lps in per_member]


def _items(path: str, storage_options: dict[str, Any] | None) -> bytes:
    """The user's JSONL bytes, once every line parses (errors name the file and line)."""
    data = source_file(path, storage_options).read_bytes()
    ev.parse_multiple_choice(data, path)
    return data

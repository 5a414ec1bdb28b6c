"""The evaluator-kind extension point: `EvaluatorKind` (everything the pipeline does with one kind of target
component) and the registry a kind joins with `@register_kind`.

A kind is what `EvaluatorSpec.kind` names: its value's natural direction, the checks and the name of a spec of
that kind, the extra fields its spec JSON carries, how the user's `TargetConfig` configures it and how its
evaluation set is checked, prepared into stored files and fingerprinted, and how one model or a pack of
models is scored on it. Kinds import torch and the other heavy libraries inside their scoring methods only,
so the configs that validate against the registry load fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from upath import UPath

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage

if TYPE_CHECKING:
    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.spec import EvaluatorSpec


def source_file(path: str, storage_options: dict[str, Any] | None) -> UPath:
    """A user's evaluation set that is one file: present, not a folder, not empty (errors name the path)."""
    p = storage.make_path(path, storage_options, what="target evaluation set")
    if not p.exists():
        raise ClimbInputError(f"target evaluation set not found: {path}")
    if p.is_dir():
        raise ClimbInputError(f"target evaluation set {path} is a directory; give the path of one file")
    if p.is_file() and p.stat().st_size == 0:
        raise ClimbInputError(f"target evaluation set is empty: {path}")
    return p


class EvaluatorKind:
    """One kind of target component; subclass it in one file and decorate the class with `@register_kind`.

    Prepared in two passes so that nothing is written before every component's input is valid: `load`
    reads and checks the user's input (and may build files in memory), `write` stores them under the
    experiment's target folder, adds their bytes to the fingerprint and returns the EvaluatorSpec fields.
    """

    name: ClassVar[str]
    # The TargetConfig kind that is this component alone (e.g. documents_loss for loss).
    target_kind: ClassVar[str]
    # What configures it in a TargetConfig, for messages (e.g. "mc_path (a JSONL of context/choices/gold)").
    requirement: ClassVar[str]
    natural: ClassVar[Direction]
    # Every `combined` target has this component (held-out loss); the others join it.
    combined_base: ClassVar[bool] = False
    # Its evaluation set is a folder (fetched whole), not one file; copies of it are capped as `copy_kind`
    # (core/io/settings.COPY_CAPS).
    folder: ClassVar[bool] = False
    copy_kind: ClassVar[str | None] = None
    # A model loaded from a checkpoint folder gets its tokenizer too when a component needs it.
    needs_tokenizer: ClassVar[bool] = False

    # --- the spec (EvaluatorSpec) -----------------------------------------------------------------------

    def natural_direction(self, spec: EvaluatorSpec) -> Direction:
        return self.natural

    def check_spec(self, spec: EvaluatorSpec) -> None:
        """Refuse fields of a spec of this kind that the kind cannot use (ClimbInputError naming the field)."""

    def label(self, spec: EvaluatorSpec) -> str:
        """The component's name, unique within a target (scores are keyed by it)."""
        return f"{spec.kind}:{Path(spec.path).name}"

    def spec_fields(self, spec: EvaluatorSpec) -> dict[str, Any]:
        """JSON fields beyond the common ones. Hashes of stored targets depend on them: add none to a kind
        whose targets are already stored."""
        return {}

    def check_files(self, spec: EvaluatorSpec) -> None:
        """Raise ClimbInputError naming the local evaluation set when it is missing or empty."""
        p = Path(spec.path)
        if not p.is_file():
            raise ClimbInputError(f"evaluation set for {spec.kind} not found: {p}")
        if p.stat().st_size == 0:
            raise ClimbInputError(f"evaluation set for {spec.kind} is empty: {p}")

    # --- the user's TargetConfig --------------------------------------------------------------------------

    def configured(self, target: TargetConfig) -> bool:
        """Whether the target has this component (every configured component is part of the score)."""
        raise NotImplementedError

    def require(self, target: TargetConfig) -> None:
        """Refuse a target whose kind needs this component when it is not configured."""
        if not self.configured(target):
            raise ClimbInputError(f"target kind {target.kind!r} needs {self.requirement}")

    def check_config(self, target: TargetConfig) -> None:
        """Refuse this component's fields in an inconsistent state (whatever the target's kind)."""

    def target_direction(self, target: TargetConfig) -> Direction:
        """The direction of a target that is this component alone."""
        return self.natural

    def check_source(
        self, target: TargetConfig, storage_options: dict[str, Any] | None, storage_root: UPath | None = None
    ) -> None:
        """Fail early, naming the path, when the user's evaluation set is missing, empty or malformed
        (`storage_root`: where assets are stored, which a folder to copy must not hold)."""

    def load(
        self,
        target: TargetConfig,
        tokenizer_dir: Path,
        block_size: int,
        storage_options: dict[str, Any] | None,
        storage_root: UPath | None = None,
    ) -> Any:
        """The checked input of a configured component, ready for `write` (nothing written yet)."""
        raise NotImplementedError

    def write(self, loaded: Any, target: TargetConfig, out: UPath, digest: Any) -> dict[str, Any]:
        """Store the component's files under `out`, add their bytes to `digest`; return the EvaluatorSpec
        fields besides `kind` (path, weight, ...)."""
        raise NotImplementedError

    # --- scoring --------------------------------------------------------------------------------------------

    def score(self, model: Any, spec: EvaluatorSpec, tokenizer: Any) -> float:
        """The component's raw value for one model (a LlamaForCausalLM)."""
        raise NotImplementedError

    def score_pack(self, pack: Any, models: list[Any], spec: EvaluatorSpec, tokenizer: Any) -> list[float]:
        """The value of each model of a pack (`pack`: their PackedLlama, in eval mode, under no_grad); by
        default each model alone. A non-finite value marks that model diverged."""
        return [self.score(model, spec, tokenizer) for model in models]


_REGISTRY: dict[str, EvaluatorKind] = {}
K = TypeVar("K", bound=type[EvaluatorKind])


def register_kind(cls: K) -> K:
    """Class decorator: make the kind available by its `name` (replacing one of the same name)."""
    _REGISTRY[cls.name] = cls()
    return cls


def unregister_kind(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_kinds() -> tuple[EvaluatorKind, ...]:
    """In registration order: the order a prepared target lists its components and fingerprints them."""
    return tuple(_REGISTRY.values())


def kind_named(name: str) -> EvaluatorKind:
    if name not in _REGISTRY:
        raise ClimbInputError(f"EvaluatorSpec.kind must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]

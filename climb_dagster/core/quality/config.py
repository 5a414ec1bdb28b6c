"""One list of quality raters: a dimension name, a model (path or URI) and a weight each.

The CLIMB paper rates every document on several dimensions with fastText classifiers trained on
LLM-annotated labels (overall quality, educational value, informational value, advertisement; NVIDIA's
released set adds cultural value) and prunes clusters whose mean score is below 3.0. A raters file
(YAML or JSON) lists them:

    raters:
      - {dimension: quality,       model: s3://models/climb/quality.bin,       weight: 1,
         sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
      - {dimension: educational,   model: /models/climb/educational.bin,       weight: 1}
      - {dimension: informational, model: /models/climb/informational.bin,     weight: 1}
      - {dimension: advertisement, model: /models/climb/advertisement.bin,     weight: 1}
      - {dimension: gopher, kind: heuristic, weight: 0.5}      # no model: the built-in heuristics

`kind` defaults to fasttext (any `train_supervised` .bin; labels `__label__0..5`/`1..5` or high/mid/low
load as they are, anything else needs `label_scores`); other kinds are registered rater names or
"module:Factory". Remote models (s3://, any fsspec URI) are copied once into the local cache. `sha256`
(optional; `python -m climb_dagster.quality train` prints it) pins the model file: another file is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.quality.base import RaterSpec

PAPER_DIMENSIONS = ("quality", "educational", "informational", "advertisement")
FILE_KINDS = ("fasttext",)  # kinds whose `model` is a file to fetch


@dataclass(frozen=True)
class RaterEntry:
    """One rater of the list."""

    dimension: str
    model: str | None = None
    weight: float = 1.0
    kind: str = "fasttext"
    label_scores: Mapping[str, float] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.dimension or not isinstance(self.dimension, str):
            raise ClimbInputError(f"rater dimension must be a non-empty string, got {self.dimension!r}")
        if not (isinstance(self.weight, int | float) and self.weight >= 0):
            raise ClimbInputError(f"rater {self.dimension!r}: weight={self.weight!r} must be a number >= 0")
        if self.kind in FILE_KINDS and not self.model:
            raise ClimbInputError(f"rater {self.dimension!r} ({self.kind}) needs `model`: a path or URI")
        if self.sha256 is not None:
            if self.kind not in FILE_KINDS:
                raise ClimbInputError(
                    f"rater {self.dimension!r}: sha256 pins a model file; kind {self.kind!r} has none"
                )
            if not (isinstance(self.sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256)):
                raise ClimbInputError(
                    f"rater {self.dimension!r}: sha256 must be 64 hex digits, got {self.sha256!r}"
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "raters") -> RaterEntry:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ClimbInputError(
                f"{where}: unknown rater fields {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}"
            )
        if "dimension" not in data:
            raise ClimbInputError(f"{where}: a rater lacks `dimension`: {dict(data)}")
        return cls(**dict(data))

    def spec(self, storage_options: Mapping[str, Any] | None = None) -> RaterSpec:
        """The `build_rater` spec, with a remote model fetched to a local file."""
        options = dict(self.options)
        if self.kind in FILE_KINDS:
            assert self.model is not None
            path = storage.make_path(self.model, dict(storage_options or {}))
            try:
                local = storage.local_copy(path)
            except FileNotFoundError:
                local = None
            if local is None or not local.is_file():
                raise ClimbInputError(f"rater {self.dimension!r}: model {self.model!r} not found")
            options |= {"model_path": str(local), "name": self.dimension, "source": self.model}
            if self.sha256 is not None:
                options["sha256"] = self.sha256
            if self.label_scores is not None:
                options["label_scores"] = dict(self.label_scores)
        return RaterSpec(self.kind, options, float(self.weight), self.dimension)


def parse_raters(data: Any, where: str = "raters") -> list[RaterEntry]:
    """Entries from `{"raters": [...]}` or a bare list; dimensions must be unique."""
    items = data.get("raters") if isinstance(data, Mapping) else data
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ClimbInputError(
            f"{where}: expected a non-empty list of raters (or {{raters: [...]}}), got {data!r}"
        )
    entries = [RaterEntry.from_dict(item, f"{where}[{i}]") for i, item in enumerate(items)]
    dims = [e.dimension for e in entries]
    dup = sorted({d for d in dims if dims.count(d) > 1})
    if dup:
        raise ClimbInputError(f"{where}: dimensions {dup} appear more than once")
    if sum(e.weight for e in entries) <= 0:
        raise ClimbInputError(f"{where}: rater weights sum to 0")
    return entries


def load_raters(path: str | Path) -> list[RaterEntry]:
    """Read a raters file: YAML (.yaml/.yml) or JSON."""
    p = Path(path)
    if not p.is_file():
        raise ClimbInputError(f"raters file {str(p)!r} not found")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        import yaml

        errors: tuple[type[Exception], ...] = (yaml.YAMLError,)
        parse: Any = yaml.safe_load
    else:
        errors, parse = (ValueError,), json.loads
    try:
        data = parse(text)
    except errors as exc:
        raise ClimbInputError(f"raters file {str(p)!r}: cannot parse ({exc})") from exc
    return parse_raters(data, str(p))

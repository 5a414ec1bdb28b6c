"""The `target` of an experiment's config: one of four kinds, each with the files it needs as required fields,
so the launchpad names what is missing instead of accepting a config that fails once the run starts.

In run config the kind is the key: `target: {documents_loss: {documents_path: s3://.../heldout.parquet}}`.
Scoring rules are core.experiment.TargetConfig's.
"""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from climb_dagster.core.io.settings import Settings
from climb_dagster.core.targets.config import TargetConfig

DOCUMENTS = "Held-out target documents (Parquet or JSONL with a `text` column; local path or s3://)."
MC = "Multiple-choice items, lm-evaluation-harness style JSONL with `context`, `choices`, `gold`."
LM_EVAL_PATH = "Local folder (or s3://) of lm-evaluation-harness task YAML and data files."
LM_EVAL_TASKS = "lm-evaluation-harness task names in that folder."
LM_EVAL_METRIC = "Metric reported by the tasks, averaged over them (acc, acc_norm, ...)."
LM_EVAL_LIMIT = "At most this many examples per task (null: all)."
LM_EVAL_TRUST = (
    "Run the Python the task folder brings (!function tags, .py files, Python tasks, metric scripts). Off: the "
    "folder must be data only, and one with code is refused naming the file and line. Read that code first."
)


class DocumentsLossTarget(dg.Config):
    """Mean next-token loss of each proxy on held-out documents (minimised)."""

    kind: Literal["documents_loss"] = "documents_loss"
    documents_path: str = Field(description=DOCUMENTS)

    def build(self) -> TargetConfig:
        return TargetConfig(kind=self.kind, documents_path=self.documents_path)


class McAccuracyTarget(dg.Config):
    """Multiple-choice accuracy of each proxy (maximised)."""

    kind: Literal["mc_accuracy"] = "mc_accuracy"
    mc_path: str = Field(description=MC)

    def build(self) -> TargetConfig:
        return TargetConfig(kind=self.kind, mc_path=self.mc_path)


class LmEvalTarget(dg.Config):
    """An lm-evaluation-harness metric averaged over tasks (maximised; minimised for perplexity-like ones)."""

    kind: Literal["lm_eval"] = "lm_eval"
    lm_eval_path: str = Field(description=LM_EVAL_PATH)
    lm_eval_tasks: list[str] = Field(description=LM_EVAL_TASKS)
    lm_eval_metric: str = Field(default="acc", description=LM_EVAL_METRIC)
    lm_eval_limit: int | None = Field(default=None, description=LM_EVAL_LIMIT)
    lm_eval_trust_remote_code: bool = Field(default=False, description=LM_EVAL_TRUST)

    def build(self) -> TargetConfig:
        return TargetConfig(
            kind=self.kind,
            lm_eval_path=self.lm_eval_path,
            lm_eval_tasks=tuple(self.lm_eval_tasks),
            lm_eval_metric=self.lm_eval_metric,
            lm_eval_limit=self.lm_eval_limit,
            lm_eval_trust_remote_code=self.lm_eval_trust_remote_code,
        )


class CombinedTarget(dg.Config):
    """Held-out loss with multiple choice and/or lm-eval: loss - accuracy - lm_eval_weight * metric
    (minimised). Needs documents_path and at least one of mc_path and lm_eval_tasks."""

    kind: Literal["combined"] = "combined"
    documents_path: str = Field(description=DOCUMENTS)
    mc_path: str | None = Field(default=None, description=MC + " Null: no multiple-choice component.")
    lm_eval_path: str | None = Field(default=None, description=LM_EVAL_PATH + " Needed with lm_eval_tasks.")
    lm_eval_tasks: list[str] = Field(default=[], description=LM_EVAL_TASKS + " Empty: no lm-eval component.")
    lm_eval_metric: str = Field(default="acc", description=LM_EVAL_METRIC)
    lm_eval_weight: float = Field(
        default=1.0, description="Weight of the lm-eval metric in the combined score."
    )
    lm_eval_limit: int | None = Field(default=None, description=LM_EVAL_LIMIT)
    lm_eval_trust_remote_code: bool = Field(default=False, description=LM_EVAL_TRUST)

    def build(self) -> TargetConfig:
        return TargetConfig(
            kind=self.kind,
            documents_path=self.documents_path,
            mc_path=self.mc_path,
            lm_eval_path=self.lm_eval_path,
            lm_eval_tasks=tuple(self.lm_eval_tasks),
            lm_eval_metric=self.lm_eval_metric,
            lm_eval_weight=self.lm_eval_weight,
            lm_eval_limit=self.lm_eval_limit,
            lm_eval_trust_remote_code=self.lm_eval_trust_remote_code,
        )


Target = DocumentsLossTarget | McAccuracyTarget | LmEvalTarget | CombinedTarget


def documents_target(path: str) -> dict:
    """Run config of the most common target: held-out loss on the documents at `path`."""
    return {"documents_loss": {"documents_path": str(path)}}


# The demo's held-out target (`make demo` writes it): the launchpad's default, so its scaffold is a valid config.
DEMO_TARGET_DOMAIN = "postgres_docs"


def demo_target_path() -> Path:
    return Path(Settings.from_env().home) / "targets" / f"{DEMO_TARGET_DOMAIN}-heldout.parquet"


def default_target() -> DocumentsLossTarget:
    """The launchpad's default target: held-out loss on the demo's target documents under CLIMB_HOME (the
    experiment asset refuses it, naming the path, where the demo has not run)."""
    return DocumentsLossTarget(documents_path=str(demo_target_path()))

"""document_quality: every document of a drop rated 1-5 by the configured raters (per drop)."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

from typing import Any

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.clustering.common import GROUP
from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.quality.base import RaterSpec, build_rater, constant_raters, rate_documents
from climb_dagster.partitions import crawl_drops


class QualityConfig(dg.Config):
    """Raters: a raters file (YAML/JSON list of dimension, model path or URI, weight; see
    climb_dagster.core.quality.config), or by registered name ("heuristic", "fasttext") / "module:Factory".

    rater_options: name -> keyword options, e.g. {"fasttext": {"model_path": "/models/quality.bin"}};
    rater_weights: name -> weight when several raters are averaged. Default: the heuristic rater alone.
    """

    raters_file: str | None = Field(
        default=None,
        description="A raters file (YAML/JSON list of dimension, model path or URI, weight); when set, "
        "raters, rater_options and rater_weights are not used.",
    )
    raters: list[str] = Field(
        default=["heuristic"],
        description='Raters by registered name ("heuristic", "fasttext") or "module:Factory".',
    )
    rater_options: dict[str, dict[str, Any]] = Field(
        default={},
        description='Rater name -> keyword options, e.g. {"fasttext": {"model_path": "/models/quality.bin"}}.',
    )
    rater_weights: dict[str, float] = Field(
        default={}, description="Rater name -> weight when several raters are averaged (default 1 each)."
    )

    def build(self, storage_options: dict[str, Any] | None = None) -> list[RaterSpec]:
        if self.raters_file:
            from climb_dagster.core.quality.config import load_raters

            return [entry.spec(storage_options) for entry in load_raters(self.raters_file)]
        unknown = (set(self.rater_options) | set(self.rater_weights)) - set(self.raters)
        if unknown:
            raise ClimbInputError(
                f"options/weights for raters {sorted(unknown)} not listed in raters={self.raters}"
            )
        return [
            RaterSpec(n, self.rater_options.get(n, {}), self.rater_weights.get(n, 1.0)) for n in self.raters
        ]


@dg.asset(partitions_def=crawl_drops, group_name=GROUP, kinds={"polars"})
def document_quality(
    context: dg.AssetExecutionContext, config: QualityConfig, raw_documents: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """Quality score 1-5 per document of the drop from the configured raters (id, quality)."""
    specs = config.build()
    rater = build_rater(specs)
    timer = Timer()
    scores = rate_documents(rater, raw_documents)
    seconds = timer.seconds
    constant = constant_raters(rater, raw_documents)
    if constant:
        context.log.warning(f"raters {constant} give every probed document of the drop the same score")
    table = pl.DataFrame({schema.ID: raw_documents.get_column(schema.ID), schema.QUALITY: scores})
    q = np.quantile(scores, [0.1, 0.5, 0.9]) if len(scores) else [0.0, 0.0, 0.0]
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "raters": ", ".join(f"{s.label or s.name} (x{s.weight:g})" for s in specs),
            "mean_quality": float(scores.mean()) if len(scores) else 0.0,
            "p10_p50_p90": dg.MetadataValue.json([round(float(x), 3) for x in q]),
            "below_3": int((scores < 3.0).sum()),
            "constant_raters": ", ".join(constant) or "none",
            "seconds": round(seconds, 3),
            "docs_per_s": round(table.height / max(seconds, 1e-9), 1),
        },
    )

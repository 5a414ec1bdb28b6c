"""Export a mixture for training frameworks: blend weights in three formats and a sampled training set.

The sampled set works like ClimbMix: each super-cluster c contributes `weight_c * token_budget` tokens at a
repeat rate `r_c = target_c / available_c` (clusters smaller than their share are repeated, as epochs). The
budget is shrunk, by default, to the largest at which no super-cluster repeats more than `max_repeat` times,
so every share holds. Documents are drawn by token-level error diffusion per super-cluster (in a seeded hash
order), so the realized tokens of a super-cluster stay within one document of its target, and the realized
share beside the target share is checked against a tolerance.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from upath import UPath

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import publication, storage
from climb_dagster.core.search.sampling import validate_mixtures

BLEND_FILE = "blend.json"
SEVERITIES = ("error", "warn")
# Documents over which sample_documents repays what a super-cluster is owed.
HORIZON = 16
MANIFEST_FILE = publication.MANIFEST


@dataclass(frozen=True)
class ExportConfig:
    """How a mixture is exported.

    Args:
        token_budget: tokens of the sampled set; 0 = as many as the kept corpus holds (the mixture
            re-weights it; small clusters repeat).
        max_repeat: no super-cluster is repeated more than this many times.
        fit_budget: shrink the budget to the largest at which every super-cluster meets its share within
            max_repeat repeats (the default); when False the budget stays and a capped super-cluster is
            starved of its surplus weight (the share check then says so).
        shard_rows: rows per Parquet shard.
        share_tolerance: largest allowed |realized share - target share| of any super-cluster.
        share_severity: what a share beyond the tolerance is: "error" (the check fails) or "warn".
    """

    token_budget: int = 0
    max_repeat: float = 4.0
    fit_budget: bool = True
    shard_rows: int = 5_000
    seed: int = 0
    share_tolerance: float = 0.02
    share_severity: str = "error"

    def __post_init__(self) -> None:
        if self.token_budget < 0:
            raise ClimbInputError(f"ExportConfig.token_budget must be >= 0, got {self.token_budget}")
        if not self.max_repeat > 0:
            raise ClimbInputError(f"ExportConfig.max_repeat must be > 0, got {self.max_repeat}")
        if self.shard_rows < 1:
            raise ClimbInputError(f"ExportConfig.shard_rows must be >= 1, got {self.shard_rows}")
        if not 0 < self.share_tolerance < 1:
            raise ClimbInputError(
                f"ExportConfig.share_tolerance must be in (0, 1), got {self.share_tolerance}"
            )
        if self.share_severity not in SEVERITIES:
            raise ClimbInputError(
                f"ExportConfig.share_severity must be one of {SEVERITIES}, got {self.share_severity!r}"
            )


@dataclass(frozen=True)
class ExportPlan:
    """Per super-cluster: weight, expected repeat rate (capped at max_repeat), and the token budget."""

    weights: np.ndarray
    rates: np.ndarray
    token_budget: int
    capped: tuple[int, ...]  # super-clusters whose rate was capped
    uncapped_max_rate: float


def plan_export(
    weights: Sequence[float], available_tokens: Sequence[int], config: ExportConfig
) -> ExportPlan:
    w = np.asarray(weights)
    budget = config.token_budget or int(sum(available_tokens))
    if config.fit_budget:
        budget = min(budget, fitted_budget(w, available_tokens, config.max_repeat))
    rates = repeat_rates(w, available_tokens, budget)
    capped = rates > config.max_repeat
    top = float(rates.max()) if rates.size else 0.0
    if capped.any():
        rates = np.minimum(rates, config.max_repeat)
    return ExportPlan(w, rates, budget, tuple(np.flatnonzero(capped).tolist()), top)


def fitted_budget(weights: np.ndarray, available_tokens: Sequence[int], max_repeat: float) -> int:
    """The largest budget at which every weighted super-cluster needs at most `max_repeat` repeats."""
    avail = np.asarray(available_tokens, dtype=np.float64)
    held = weights > 0
    if not held.any():
        raise ClimbInputError("the mixture gives no super-cluster any weight")
    return max(1, int(np.floor((max_repeat * avail[held] / weights[held]).min())))


@dataclass(frozen=True)
class ShareReport:
    """Realized token share per super-cluster beside the target share, and whether they agree."""

    target: tuple[float, ...]
    realized: tuple[float, ...]
    tolerance: float
    severity: str

    @property
    def differences(self) -> np.ndarray:
        return np.asarray(self.realized) - np.asarray(self.target)

    @property
    def max_abs_difference(self) -> float:
        return float(np.abs(self.differences).max()) if self.target else 0.0

    @property
    def off_target(self) -> tuple[int, ...]:
        """Super-clusters whose realized share misses the target by more than the tolerance."""
        return tuple(np.flatnonzero(np.abs(self.differences) > self.tolerance).tolist())

    @property
    def passed(self) -> bool:
        return not self.off_target

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": list(self.target),
            "realized": list(self.realized),
            "tolerance": self.tolerance,
            "severity": self.severity,
            "max_abs_difference": self.max_abs_difference,
            "off_target": list(self.off_target),
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShareReport:
        return cls(tuple(d["target"]), tuple(d["realized"]), float(d["tolerance"]), str(d["severity"]))


def share_report(weights: Sequence[float], tokens: Sequence[int], config: ExportConfig) -> ShareReport:
    """Compare the tokens sampled per super-cluster with the mixture's weights."""
    got = np.asarray(tokens, dtype=np.float64)
    realized = got / got.sum() if got.sum() > 0 else np.zeros_like(got)
    return ShareReport(
        tuple(round(float(w), 6) for w in weights),
        tuple(round(float(r), 6) for r in realized),
        config.share_tolerance,
        config.share_severity,
    )


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """Tokens per document as a training run sees it (its tokens plus one end-of-document token)."""
    encoded = tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return [len(e.ids) + 1 for e in encoded]


@dataclass(frozen=True)
class DropExport:
    """What one drop contributed to an export version: its shards (relative to the export root) and its tokens
    per super-cluster. The per-drop steps write these; `publish_export` combines them."""

    drop: str
    shards: tuple[dict[str, Any], ...]
    tokens: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"drop": self.drop, "shards": [dict(s) for s in self.shards], "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DropExport:
        try:
            return cls(str(data["drop"]), tuple(dict(s) for s in data["shards"]), tuple(int(t) for t in data["tokens"]))
        except KeyError as exc:
            raise ClimbInputError(f"drop export record is missing {exc.args[0]!r}") from exc


def export_drop(
    out: UPath, version: UPath, drop: str, docs: pl.DataFrame, plan: ExportPlan, config: ExportConfig
) -> DropExport:
    """Sample one drop's kept documents (id, text, super_cluster, n_tokens) at the plan's rates into Parquet
    shards `train-<drop>-NNNNN.parquet` of `version` (each written atomically). Drops are independent (each
    repays what its own super-clusters are owed), so they export in parallel steps; memory holds one drop."""
    n_super = plan.weights.size
    missing = [c for c in (schema.ID, schema.TEXT, schema.SUPER_CLUSTER, schema.N_TOKENS) if c not in docs.columns]
    if missing:
        raise ClimbInputError(f"drop {drop!r}: export documents lack columns {missing} (columns {docs.columns})")
    sampled = sample_documents(docs, plan.rates, config.seed, np.zeros(n_super))
    got = np.zeros(n_super, dtype=np.int64)
    np.add.at(got, sampled[schema.SUPER_CLUSTER].to_numpy(), sampled[schema.N_TOKENS].to_numpy())
    shards: list[dict[str, Any]] = []
    for start in range(0, sampled.height, config.shard_rows):
        frame = sampled.slice(start, config.shard_rows)
        shard = version / f"train-{drop}-{len(shards):05d}.parquet"
        blob = io.BytesIO()
        frame.write_parquet(blob, compression="zstd")
        storage.atomic_write_bytes(shard, blob.getvalue())
        shards.append(
            {"file": publication.relative(out, shard), "rows": frame.height, "tokens": int(frame[schema.N_TOKENS].sum())}
        )
    return DropExport(drop, tuple(shards), tuple(int(t) for t in got))


def publish_export(
    out: UPath,
    version: UPath,
    drops: Sequence[DropExport],
    plan: ExportPlan,
    config: ExportConfig,
    blend: dict[str, Any],
    about: Mapping[str, Any],
) -> dict[str, Any]:
    """Combine the drops' shards into one manifest with the share check, write blend.json, then switch
    `out/manifest.json` to the version (core/io/publication.py): a reader never sees a manifest that disagrees
    with its shards, and a crash before this leaves the previous export whole.

    `about` names the export (experiment, super_clusters, final_mixture) in the manifest. Returns the
    manifest, with the shard and blend paths relative to `out` and the `version` published.
    """
    drops = sorted(drops, key=lambda d: d.drop)
    got = np.zeros(plan.weights.size, dtype=np.int64)
    for d in drops:
        if len(d.tokens) != got.size:
            raise ClimbInputError(f"drop {d.drop!r} exported {len(d.tokens)} super-clusters, the plan has {got.size}")
        got += np.asarray(d.tokens, dtype=np.int64)
    shards = [s for d in drops for s in d.shards]
    shares = share_report(plan.weights, got, config)
    manifest = {
        "experiment": about["experiment"],
        "token_budget": plan.token_budget,
        "max_repeat": config.max_repeat,
        "tokens_sampled": int(got.sum()),
        "tokens_per_super_cluster": got.tolist(),
        "target_share": list(shares.target),
        "realized_share": list(shares.realized),
        "share_check": shares.to_dict(),
        "repeat_rates": [round(float(r), 6) for r in plan.rates],
        "drops": [d.drop for d in drops],
        "shards": shards,
        "blend": blend,
        "super_clusters": about["super_clusters"],
        "seed": config.seed,
        "final_mixture": about["final_mixture"],
        "files": [publication.relative(out, version / BLEND_FILE)],
    }
    storage.atomic_write_text(version / BLEND_FILE, json.dumps(blend, indent=1))
    # The manifest switch last: until then readers keep the previous version.
    return publication.publish(out, version, manifest)


def write_export(
    out: UPath,
    documents: Iterable[tuple[str, pl.DataFrame]],
    plan: ExportPlan,
    config: ExportConfig,
    blend: dict[str, Any],
    about: Mapping[str, Any],
) -> dict[str, Any]:
    """The whole export in one process: each (drop, documents) pair through `export_drop`, then `publish_export`
    (the pipeline runs the drops as parallel steps instead)."""
    version = publication.new_version(out)
    parts = [export_drop(out, version, drop, docs, plan, config) for drop, docs in documents]
    return publish_export(out, version, parts, plan, config, blend, about)


def blend_formats(
    weights: Sequence[float],
    names: Sequence[str],
    data_prefixes: Sequence[str],
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The mixture as JSON weights, a Megatron-LM/NeMo `--data-path` list and HF interleave probabilities.

    `labels` (human names from the top terms) go under their own key, name -> label, so readers of the
    weights keep working."""
    w = validate_mixtures(np.asarray([weights], dtype=np.float64), len(names), source="final mixture")[0]
    if len(data_prefixes) != len(names):
        raise ClimbInputError(f"{len(data_prefixes)} data prefixes for {len(names)} super-clusters")
    if labels is not None and len(labels) != len(names):
        raise ClimbInputError(f"{len(labels)} labels for {len(names)} super-clusters")
    keep = [i for i in range(len(names)) if w[i] > 0]
    named = {"labels": dict(zip(names, labels, strict=True))} if labels is not None else {}
    return {
        "weights": {names[i]: float(w[i]) for i in range(len(names))},
        **named,
        # Megatron/NeMo take "weight prefix weight prefix ..." and renormalise the weights themselves.
        "megatron_data_path": " ".join(f"{w[i]:.6f} {data_prefixes[i]}" for i in keep),
        "megatron_data_path_list": [[float(w[i]), data_prefixes[i]] for i in keep],
        # datasets.interleave_datasets([ds_0, ds_1, ...], probabilities=..., stopping_strategy="all_exhausted")
        "hf_interleave_datasets": {
            "datasets": [names[i] for i in keep],
            "probabilities": [float(w[i]) for i in keep],
        },
    }


def repeat_rates(weights: Sequence[float], available_tokens: Sequence[int], token_budget: int) -> np.ndarray:
    """How many times, in expectation, each super-cluster's documents are used to meet the budget."""
    w = np.asarray(weights, dtype=np.float64)
    avail = np.asarray(available_tokens, dtype=np.float64)
    if token_budget < 1:
        raise ClimbInputError(f"token_budget must be >= 1, got {token_budget}")
    empty = (avail <= 0) & (w > 0)
    if empty.any():
        raise ClimbInputError(f"super-clusters {np.flatnonzero(empty).tolist()} have weight but no tokens")
    return np.divide(w * token_budget, avail, out=np.zeros_like(w), where=avail > 0)


def _uniform(ids: Sequence[str], seed: int, salt: str = "") -> np.ndarray:
    """A uniform [0, 1) draw per document id, independent of row order (so drops can stream in any order)."""
    out = np.empty(len(ids))
    for i, doc_id in enumerate(ids):
        h = hashlib.blake2b(f"{seed}:{salt}{doc_id}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little") / 2**64
    return out


def sample_documents(
    docs: pl.DataFrame, rates: np.ndarray, seed: int, owed: np.ndarray | None = None
) -> pl.DataFrame:
    """Rows of `docs` (id, super_cluster, n_tokens), each repeated so that super-cluster c gets `rates[c]`
    times its tokens.

    Error diffusion per super-cluster: walking the documents in a seeded hash order, a document of c is
    taken `floor(e / n_tokens + u)` times (u its uniform draw) where `e = rate * n_tokens + owed / HORIZON`
    and `owed` is what c has been given short so far. The balance is repaid over about HORIZON documents
    rather than by the next one, which would favour short documents; so a super-cluster stays within a few
    documents of its target tokens. `owed` (per super-cluster, updated in place) carries across frames.
    """
    if docs.height == 0:
        return docs
    if owed is None:
        owed = np.zeros(rates.size)
    u = _uniform(docs[schema.ID].to_list(), seed)
    cluster = docs[schema.SUPER_CLUSTER].to_numpy()
    n_tok = np.maximum(docs[schema.N_TOKENS].to_numpy().astype(np.float64), 1.0)
    # The walk order is a second hash's order (independent of u), so the frame's row order does not matter.
    order = np.lexsort((docs[schema.ID].to_numpy(), _uniform(docs[schema.ID].to_list(), seed, "order:")))
    copies = np.zeros(docs.height, dtype=np.int64)
    for i in order:
        c, n = cluster[i], n_tok[i]
        due = rates[c] * n
        k = max(0, int(np.floor((due + owed[c] / HORIZON) / n + u[i])))
        owed[c] += due - k * n
        copies[i] = k
    return docs[np.repeat(np.arange(docs.height), copies)]

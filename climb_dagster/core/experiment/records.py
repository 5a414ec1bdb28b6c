"""Typed records that cross asset boundaries: the experiment record, the token-store reference and the
final mixture. Each is a frozen dataclass with to_dict/from_dict; the IO manager stores them as JSON
(with a `record_type` tag, see RECORD_TYPES) and gives them back typed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.cost import CostEstimate

# The key under which the IO manager stores a record's type beside its fields.
RECORD_TYPE_KEY = "record_type"


def _missing(kind: str, exc: KeyError, data: Mapping[str, Any]) -> ClimbInputError:
    return ClimbInputError(f"{kind} is missing {exc.args[0]!r}: {json.dumps(dict(data), default=str)[:300]}")


@dataclass(frozen=True)
class TokenStoreRef:
    """Where `cluster_tokens` stored the token store, and each super-cluster's tokens and documents in the kept
    corpus (the natural mixture, the export's supply). `stored_tokens`: what the proxies can sample from each
    super-cluster (below `tokens` where a drop's or a super-cluster's cap sampled it; empty: all of `tokens`)."""

    path: str
    key: str
    vocab_size: int
    tokens: tuple[int, ...]
    documents: tuple[int, ...]
    stored_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(int(t) for t in self.tokens))
        object.__setattr__(self, "documents", tuple(int(d) for d in self.documents))
        object.__setattr__(self, "stored_tokens", tuple(int(t) for t in self.stored_tokens))
        if len(self.tokens) != len(self.documents):
            raise ClimbInputError(
                f"token store {self.key}: {len(self.tokens)} token counts for {len(self.documents)} document counts"
            )
        if self.stored_tokens and len(self.stored_tokens) != len(self.tokens):
            raise ClimbInputError(
                f"token store {self.key}: {len(self.stored_tokens)} stored counts for {len(self.tokens)} super-clusters"
            )

    @property
    def n_clusters(self) -> int:
        return len(self.tokens)

    def prior(self) -> np.ndarray:
        """Natural mixture: each super-cluster's share of the kept corpus's tokens."""
        tokens = np.asarray(self.tokens, dtype=np.float64)
        return tokens / tokens.sum()

    def untrainable(self, block_size: int) -> list[int]:
        """Super-clusters a proxy cannot draw one window of `block_size + 1` tokens from: too few of their tokens
        were stored (a small super-cluster whose few documents fell outside every drop's sample)."""
        return [c for c, n in enumerate(self.sampled()) if n < block_size + 1]

    def search_prior(self, block_size: int) -> np.ndarray:
        """The prior the search draws around: the natural mixture with the untrainable super-clusters at zero
        (renormalised), so no proposal gives them weight. The natural mixture itself when all are trainable."""
        prior = self.prior()
        out = self.untrainable(block_size)
        if not out:
            return prior
        if len(out) == prior.size:
            raise ClimbInputError(
                f"token store {self.key}: no super-cluster holds block_size+1={block_size + 1} stored tokens "
                f"(stored: {list(self.sampled())}); raise drop_tokens' max_stored_tokens"
            )
        prior = prior.copy()
        prior[out] = 0.0
        return prior / prior.sum()

    def sampled(self) -> tuple[int, ...]:
        """Tokens the proxies can sample per super-cluster."""
        return self.stored_tokens or self.tokens

    def to_dict(self) -> dict[str, Any]:
        data = {
            "path": self.path,
            "key": self.key,
            "vocab_size": self.vocab_size,
            "tokens": list(self.tokens),
            "documents": list(self.documents),
        }
        if self.stored_tokens:
            data["stored_tokens"] = list(self.stored_tokens)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenStoreRef:
        try:
            return cls(
                data["path"],
                data["key"],
                int(data["vocab_size"]),
                data["tokens"],
                data["documents"],
                tuple(data.get("stored_tokens", ())),
            )
        except KeyError as exc:
            raise _missing("token store reference", exc, data) from exc


@dataclass(frozen=True)
class DropTokensRef:
    """Where `drop_tokens` stored one drop's tokens (core/proxy/drop_store.py), with its counts."""

    drop: str
    path: str
    sha256: str
    documents: int
    tokens: int
    stored_documents: int
    stored_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DropTokensRef:
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls)})
        except KeyError as exc:
            raise _missing("drop tokens reference", exc, data) from exc


@dataclass(frozen=True)
class TokenizerRef:
    """Where `proxy_tokenizer` stored the proxies' tokenizer folder, its content hash and vocabulary size."""

    path: str
    sha256: str
    vocab_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizerRef:
        try:
            return cls(str(data["path"]), str(data["sha256"]), int(data["vocab_size"]))
        except KeyError as exc:
            raise _missing("tokenizer reference", exc, data) from exc


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment's validated config plus what it was prepared against: the token store and the target.

    Stored flat (the config's fields beside token_store, token_store_path, target_spec, config_hash and
    cost) so the JSON reads like the config the user gave.
    """

    config: ExperimentConfig
    token_store: str
    token_store_path: str
    # TargetSpec.to_dict() plus the fingerprint of the evaluation files (see core.targets.prepare.prepare_target).
    target_spec: Mapping[str, Any]
    config_hash: str
    # The cost estimate the experiment passed when it was recorded; None in records written before it.
    cost: CostEstimate | None = None

    @classmethod
    def prepare(
        cls,
        config: ExperimentConfig,
        store: TokenStoreRef,
        target_spec: Mapping[str, Any],
        cost: CostEstimate | None = None,
    ) -> ExperimentRecord:
        return cls(config, store.key, store.path, dict(target_spec), config.content_hash(), cost)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def proxy(self) -> ProxyConfig:
        return self.config.proxy

    @property
    def direction(self) -> Direction:
        return Direction.parse(self.target_spec["direction"])

    def data_key(self) -> str:
        """What besides mixture/config/seed determines a proxy's score: the token store and the target.

        The target enters by content (its fingerprint) and by how it is scored, never by where its files
        are stored, so the same data on another storage root or under another experiment name reuses
        cached proxies.
        """
        spec = self.target_spec
        scoring = {
            "direction": spec["direction"],
            "evaluators": [{k: v for k, v in e.items() if k != "path"} for e in spec["evaluators"]],
        }
        return f"{self.token_store}:{spec['fingerprint']}:{content_hash(scoring)}"

    def to_dict(self) -> dict[str, Any]:
        out = self.config.to_dict() | {
            "token_store": self.token_store,
            "token_store_path": self.token_store_path,
            "target_spec": dict(self.target_spec),
            "config_hash": self.config_hash,
        }
        if self.cost is not None:
            out["cost"] = self.cost.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentRecord:
        extras = ("token_store", "token_store_path", "target_spec", "config_hash")
        try:
            config = ExperimentConfig.from_dict(
                {k: v for k, v in data.items() if k not in extras and k != "cost"}
            )
            cost = CostEstimate.from_dict(data["cost"]) if data.get("cost") is not None else None
            return cls(config, *(data[k] for k in extras), cost)
        except KeyError as exc:
            raise _missing("experiment record", exc, data) from exc


@dataclass(frozen=True)
class FinalMixture:
    """The experiment's answer: the selected weights beside the natural mixture, with predicted scores."""

    experiment: str
    strategy: str
    direction: str
    weights: tuple[float, ...]
    natural: tuple[float, ...]
    predicted_score: float
    predicted_natural_score: float
    predicted_uniform_score: float
    best_observed_score: float
    proxies_trained: int
    proxies_successful: int
    config_hash: str
    # One name per super-cluster (core.clustering.superclusters.supercluster_labels); empty in files written before.
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "natural", tuple(float(w) for w in self.natural))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if len(self.weights) != len(self.natural):
            raise ClimbInputError(
                f"final mixture of {self.experiment!r}: {len(self.weights)} weights, {len(self.natural)} natural"
            )
        if self.labels and len(self.labels) != len(self.weights):
            raise ClimbInputError(
                f"final mixture of {self.experiment!r}: {len(self.labels)} labels, {len(self.weights)} weights"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["direction"] = str(self.direction)
        data["weights"], data["natural"] = list(self.weights), list(self.natural)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinalMixture:
        try:
            return cls(
                **{f.name: data[f.name] for f in fields(cls) if f.name in data or f.default is MISSING}
            )
        except KeyError as exc:
            raise _missing("final mixture", exc, data) from exc


RECORD_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (ExperimentRecord, TokenStoreRef, TokenizerRef, FinalMixture, DropTokensRef)
}

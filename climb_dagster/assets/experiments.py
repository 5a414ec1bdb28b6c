"""Experiments: a validated config record per `experiments` partition, and its MLflow parent run."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

import dataclasses
from typing import Any

import dagster as dg
from pydantic import Field

from climb_dagster.assets.targets import Target, default_target
from climb_dagster.core.common.keys import validate_key
from climb_dagster.core.experiment.config import DEFAULT_MAX_BUDGET, ExperimentConfig
from climb_dagster.core.experiment.records import ExperimentRecord, TokenStoreRef
from climb_dagster.core.proxy.checkpoint import check_base_model
from climb_dagster.core.proxy.config import (
    DEFAULT_DEVICE_MEMORY,
    ProxyConfig,
    ProxyModelConfig,
    ProxyTrainConfig,
)
from climb_dagster.core.proxy.cost import DEFAULT_FLOPS, CostLimits
from climb_dagster.core.search.strategies import strategy_summaries
from climb_dagster.core.targets.prepare import check_target, open_token_store, prepare_target
from climb_dagster.partitions import experiments
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import experiment_run, try_track

# Round assets are defined up to here; an experiment uses its first n_rounds, the rest stay empty.
# The paper's ablations go to 4 rounds (2:2:1:1) and 6:1; 6 leaves room for longer schedules.
MAX_ROUNDS = 6


# Launchpad field -> (core config, its field there): what build() passes where, and where the default is.
FIELDS: dict[str, tuple[str, str]] = {
    "strategy": ("experiment", "strategy"),
    "rounds": ("experiment", "rounds"),
    "seed": ("experiment", "seed"),
    "n_candidates": ("experiment", "n_candidates"),
    "top_n_factor": ("experiment", "top_n_factor"),
    "reuse": ("experiment", "reuse"),
    "reuse_max_error": ("experiment", "reuse_max_error"),
    "reuse_min_overlap": ("experiment", "reuse_min_overlap"),
    "reuse_freeze": ("experiment", "reuse_freeze"),
    "proxy_d_model": ("model", "d_model"),
    "proxy_layers": ("model", "n_layers"),
    "proxy_heads": ("model", "n_heads"),
    "proxy_block_size": ("model", "block_size"),
    "proxy_batch_size": ("train", "batch_size"),
    "proxy_steps": ("train", "steps"),
    "proxy_lr": ("train", "lr"),
    "proxy_threads": ("train", "num_threads"),
    "proxy_device": ("train", "device"),
    "proxy_precision": ("train", "precision"),
    "proxy_compile": ("train", "compile"),
    "proxy_activation_checkpointing": ("train", "activation_checkpointing"),
    "proxy_pack_size": ("train", "pack_size"),
    "proxy_base_model": ("proxy", "base_model"),
    "max_hours": ("limits", "max_hours"),
    "proxy_device_memory_gib": ("limits", "device_memory_gib"),
    "proxy_device_tflops": ("limits", "device_tflops"),
    "parallel_workers": ("limits", "parallel_workers"),
}
# Fields of the launchpad alone: what the experiment is scored on, and a bound checked before it starts.
LAUNCHPAD_ONLY = ("target", "max_budget")
CONFIGS = {
    "experiment": ExperimentConfig,
    "model": ProxyModelConfig,
    "train": ProxyTrainConfig,
    "proxy": ProxyConfig,
    "limits": CostLimits,
}


def _default(field: str) -> Any:
    """The default of launchpad field `field`: its core config's (written there, once)."""
    config, name = FIELDS[field]
    return {f.name: f.default for f in dataclasses.fields(CONFIGS[config])}[name]


class ExperimentSpec(dg.Config):
    """What the UI's launchpad asks for when an experiment is created: the target (its kind is the key, e.g.
    `target: {documents_loss: {documents_path: ...}}`; by default the demo's held-out documents, so the
    launchpad's scaffold is a config that runs after `make demo`); every other field defaults to the CPU
    demo's setting, taken from the core configs it builds (ExperimentConfig, ProxyModelConfig,
    ProxyTrainConfig, ProxyConfig)."""

    target: Target = Field(
        default_factory=default_target,
        discriminator="kind",
        description="What the proxies are scored on: documents_loss (held-out loss, minimised), mc_accuracy "
        "(multiple choice, maximised), lm_eval (lm-evaluation-harness tasks) or combined. Keep one kind "
        "(the default: the demo's held-out documents under CLIMB_HOME; point documents_path at your own).",
    )
    strategy: str = Field(default=_default("strategy"), description=f"Search strategy: {strategy_summaries()}.")
    rounds: list[int] = Field(
        default=list(_default("rounds")),
        description=f"Proxies trained per round (default {sum(_default('rounds'))} in all: enough for the "
        f"predictor to learn at demo scale), e.g. the paper's [64, 32, 16]; at most {MAX_ROUNDS} rounds.",
    )
    seed: int = Field(
        default=_default("seed"),
        description="Seed of every random choice of the search, in [0, 2^31 - 2].",
    )
    n_candidates: int = Field(
        default=_default("n_candidates"),
        description="Candidate mixtures sampled per round; the round's proxies are chosen among them.",
    )
    top_n_factor: float = Field(
        default=_default("top_n_factor"),
        description="A round samples its proxies among the top (factor x proxies) candidates by prediction.",
    )
    reuse: bool = Field(
        default=_default("reuse"),
        description="Start from earlier experiments' proxies on the same target and proxy, re-expressed over the "
        "current super-clusters (asset reused_evidence).",
    )
    reuse_max_error: float = Field(
        default=_default("reuse_max_error"),
        description="Leave out a reused proxy whose share of weight gone or in changed clusters is above this.",
    )
    reuse_min_overlap: float = Field(
        default=_default("reuse_min_overlap"),
        description="An old fine cluster counts as unchanged when this share of its tokens is in one new super-cluster.",
    )
    reuse_freeze: bool = Field(
        default=_default("reuse_freeze"),
        description="Freeze-and-expand after an update that only added drops: the super-clusters it left unchanged "
        "keep the latest earlier experiment's final ratios as one block; only the others and the block's total are "
        "searched (asset frozen_block says whether it runs and why).",
    )
    proxy_d_model: int = Field(
        default=_default("proxy_d_model"), description="Proxy LM width (feed-forward width is 3x)."
    )
    proxy_layers: int = Field(default=_default("proxy_layers"), description="Proxy LM transformer layers.")
    proxy_heads: int = Field(default=_default("proxy_heads"), description="Proxy LM attention heads.")
    proxy_block_size: int = Field(
        default=_default("proxy_block_size"), description="Tokens per training and evaluation window."
    )
    proxy_batch_size: int = Field(
        default=_default("proxy_batch_size"), description="Windows per optimizer step."
    )
    proxy_steps: int = Field(
        default=_default("proxy_steps"),
        description="Optimizer steps per proxy (tokens = steps x batch size x block size).",
    )
    proxy_lr: float = Field(
        default=_default("proxy_lr"), description="Peak learning rate (warmup, then cosine decay)."
    )
    proxy_threads: int = Field(
        default=_default("proxy_threads"),
        description="torch threads per proxy (1: one proxy per core is faster on small proxies).",
    )
    proxy_device: str = Field(default=_default("proxy_device"), description="cpu or cuda.")
    proxy_precision: str = Field(
        default=_default("proxy_precision"),
        description="auto (fp32 on CPU, bf16/fp16 autocast on CUDA), fp32, bf16 or fp16.",
    )
    proxy_compile: str = Field(
        default=_default("proxy_compile"), description="torch.compile: auto (on CUDA only), on or off."
    )
    proxy_activation_checkpointing: bool = Field(
        default=_default("proxy_activation_checkpointing"),
        description="Recompute activations in the backward pass (large proxies on small GPUs).",
    )
    proxy_pack_size: int = Field(
        default=_default("proxy_pack_size"),
        description="Proxies per mapped step, trained as one batched model; 0: automatic (1 on CPU, by memory "
        "on CUDA).",
    )
    proxy_base_model: str | None = Field(
        default=_default("proxy_base_model"),
        description="Continue pre-training from this Hugging Face checkpoint (local path or s3://) instead of "
        "a fresh initialisation: a folder with config.json and safetensors weights of the proxy's sizes, "
        "checked when the experiment is recorded.",
    )
    max_budget: int = Field(
        default=DEFAULT_MAX_BUDGET,
        description="Most proxies (sum of rounds) this experiment may train; a typo like [100000] is refused "
        "up front.",
    )
    max_hours: float = Field(
        default=_default("max_hours"),
        description="Most hours of proxy training (the cost estimate's wall time) this experiment may plan; "
        "a typo like proxy_steps: 480000 is refused up front. Raise it for a longer search.",
    )
    proxy_device_memory_gib: float | None = Field(
        default=_default("proxy_device_memory_gib"),
        description="Memory (GiB) of the device a proxy step trains on; a proxy whose estimated peak exceeds "
        f"it is refused. Default: {DEFAULT_DEVICE_MEMORY['cpu'] / 2**30:g} GiB for cpu, "
        f"{DEFAULT_DEVICE_MEMORY['cuda'] / 2**30:.3g} GiB (an 80 GB A100/H100) for cuda.",
    )
    proxy_device_tflops: float | None = Field(
        default=_default("proxy_device_tflops"),
        description="Effective training TFLOP/s of one proxy step, for the time estimate. Default: "
        f"{DEFAULT_FLOPS['cpu'] / 1e12:g} per thread on cpu (measured), "
        f"{DEFAULT_FLOPS['cuda'] / 1e12:.3g} on cuda (H100 dense BF16 at 30% MFU).",
    )
    parallel_workers: int | None = Field(
        default=_default("parallel_workers"),
        description="Proxy steps that train at once, for the time estimate. Default: cores / proxy_threads "
        "on cpu, CLIMB_MAX_GPU_STEPS on cuda.",
    )

    def limits(self) -> CostLimits:
        """What the cost estimate is checked against, from the fields FIELDS maps to CostLimits."""
        return CostLimits(**{there: getattr(self, f) for f, (config, there) in FIELDS.items() if config == "limits"})

    def build(self, name: str, vocab_size: int) -> ExperimentConfig:
        """The experiment config: each field goes where FIELDS says, plus the launchpad's two derived rules
        (feed-forward width 3 x d_model; warmup at most the steps)."""
        given: dict[str, dict[str, Any]] = {config: {} for config in CONFIGS}
        for field, (config, name_there) in FIELDS.items():
            given[config][name_there] = getattr(self, field)
        model = ProxyModelConfig(vocab_size=vocab_size, d_ff=3 * self.proxy_d_model, **given["model"])
        warmup = min(ProxyTrainConfig.warmup_steps, self.proxy_steps)
        train = ProxyTrainConfig(warmup_steps=warmup, **given["train"])
        proxy = ProxyConfig(model=model, train=train, **given["proxy"])
        experiment = given["experiment"] | {"rounds": tuple(self.rounds)}
        return ExperimentConfig(name=name, target=self.target.build(), proxy=proxy, **experiment)


@dg.asset(partitions_def=experiments, group_name="experiments", kinds={"json", "mlflow"})
def experiment(
    context: dg.AssetExecutionContext,
    config: ExperimentSpec,
    cluster_tokens: TokenStoreRef,
    tracker: MlflowTracker,
    storage: ClimbStorage,
) -> dg.Output[ExperimentRecord]:
    """The experiment's validated record: target, strategy, budget per round, proxy config, seed."""
    name = validate_key(context.partition_key, "experiment name")
    record = config.build(name, vocab_size=cluster_tokens.vocab_size)
    if record.n_rounds > MAX_ROUNDS:
        raise dg.Failure(
            f"experiment {name!r} asks for {record.n_rounds} rounds; this code location defines {MAX_ROUNDS}"
        )
    # Bounds before anything is written or trained: the budget against the corpus and max_budget, the
    # proxies' memory against the device and their training time against max_hours.
    record.check_bounds(cluster_tokens.n_clusters, config.max_budget)
    # The cheapest refusals first: what the experiment would cost (sizes, time), then every input that round 1
    # would otherwise trip on after training its proxies: the target's files, the lm-eval task folder (data
    # only, every named task defined) and the base checkpoint (safetensors, sizes).
    cost = record.check_cost(config.limits())
    context.log.info(f"cost estimate of {name!r}: {cost.summary()}")
    block = record.proxy.model.block_size
    cluster_tokens.search_prior(block)  # refuses a store where no super-cluster can feed a proxy
    untrainable = cluster_tokens.untrainable(block)
    if untrainable:
        context.log.warning(
            f"super-clusters {untrainable} have fewer than block_size+1={block + 1} stored tokens: the search "
            "gives them weight 0 (raise drop_tokens' max_stored_tokens to include them)"
        )
    check_target(record.target, storage.options(), storage.root())
    if record.proxy.base_model is not None:
        check_base_model(record.proxy.base_model, record.proxy.model, storage.options())
    store = open_token_store(cluster_tokens.path, storage.options())
    target_spec = prepare_target(
        record.target,
        store.path,
        record.proxy.model.block_size,
        storage.root() / "targets" / name,
        storage.options(),
        storage.root(),
    )
    data = ExperimentRecord.prepare(record, cluster_tokens, target_spec, cost)
    tracking = try_track(
        context.log.warning, "MLflow parent run", lambda: experiment_run(tracker, data), tracker
    )
    return dg.Output(
        data,
        metadata={
            "strategy": record.strategy,
            "rounds": ":".join(map(str, record.rounds)),
            "budget": record.budget,
            "direction": str(record.target.direction),
            "config_hash": data.config_hash,
            "estimated_hours": round(cost.hours, 4),
            "estimated_peak_gib_per_step": round(cost.peak_bytes_per_step / 2**30, 3),
            "training_flops": cost.flops_total,
            "cost_estimate": dg.MetadataValue.json(cost.to_dict()),
            "untrainable_super_clusters": dg.MetadataValue.json(untrainable),
            **tracking,
        },
    )

"""Experiments: a validated config record per `experiments` partition, and its MLflow parent run."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

import dagster as dg

from climb_dagster.core.experiment import DEFAULT_MAX_BUDGET, ExperimentConfig, TargetConfig
from climb_dagster.core.keys import validate_key
from climb_dagster.core.proxy.config import ProxyConfig, ProxyModelConfig, ProxyTrainConfig
from climb_dagster.core.records import ExperimentRecord, TokenStoreRef
from climb_dagster.partitions import experiments
from climb_dagster.resources.experiment_tracking import experiment_run, try_track
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker

# Round assets are defined up to here; an experiment uses its first n_rounds, the rest stay empty.
# The paper's ablations go to 4 rounds (2:2:1:1) and 6:1; 6 leaves room for longer schedules.
MAX_ROUNDS = 6


class ExperimentSpec(dg.Config):
    """What the UI's launchpad asks for when an experiment is created (defaults: the CPU demo)."""

    target_kind: str = "documents_loss"
    target_documents_path: str | None = None
    target_mc_path: str | None = None
    # lm-evaluation-harness: a local folder of task YAML + data files, the tasks and the metric to report.
    target_lm_eval_path: str | None = None
    target_lm_eval_tasks: list[str] = []
    target_lm_eval_metric: str = "acc"
    target_lm_eval_weight: float = 1.0
    target_lm_eval_limit: int | None = None
    strategy: str = "climb"
    rounds: list[int] = [6, 3, 2]
    seed: int = 0
    n_candidates: int = 20_000
    top_n_factor: float = 4.0
    proxy_d_model: int = 128
    proxy_layers: int = 2
    proxy_heads: int = 4
    proxy_block_size: int = 128
    proxy_batch_size: int = 16
    proxy_steps: int = 48
    proxy_lr: float = 3e-3
    proxy_threads: int = 1
    proxy_device: str = "cpu"
    proxy_precision: str = "auto"
    proxy_compile: str = "auto"
    proxy_activation_checkpointing: bool = False
    # Proxies per mapped step, trained as one batched model; 0: automatic (1 on CPU, by memory on CUDA).
    proxy_pack_size: int = 0
    # Continue pre-training from this Hugging Face checkpoint (local path or s3://) instead of a fresh init.
    proxy_base_model: str | None = None
    # Most proxies (sum of rounds) this experiment may train; a typo like [100000] is refused up front.
    max_budget: int = DEFAULT_MAX_BUDGET

    def build(self, name: str, vocab_size: int) -> ExperimentConfig:
        model = ProxyModelConfig(
            vocab_size=vocab_size,
            d_model=self.proxy_d_model,
            n_layers=self.proxy_layers,
            n_heads=self.proxy_heads,
            block_size=self.proxy_block_size,
            d_ff=3 * self.proxy_d_model,
        )
        train = ProxyTrainConfig(
            batch_size=self.proxy_batch_size,
            steps=self.proxy_steps,
            lr=self.proxy_lr,
            warmup_steps=min(5, self.proxy_steps),
            num_threads=self.proxy_threads,
            device=self.proxy_device,
            precision=self.proxy_precision,
            compile=self.proxy_compile,
            activation_checkpointing=self.proxy_activation_checkpointing,
            pack_size=self.proxy_pack_size,
        )
        return ExperimentConfig(
            name=name,
            target=TargetConfig(
                kind=self.target_kind,
                documents_path=self.target_documents_path,
                mc_path=self.target_mc_path,
                lm_eval_path=self.target_lm_eval_path,
                lm_eval_tasks=tuple(self.target_lm_eval_tasks),
                lm_eval_metric=self.target_lm_eval_metric,
                lm_eval_weight=self.target_lm_eval_weight,
                lm_eval_limit=self.target_lm_eval_limit,
            ),
            strategy=self.strategy,
            rounds=tuple(self.rounds),
            proxy=ProxyConfig(model=model, train=train, base_model=self.proxy_base_model),
            seed=self.seed,
            n_candidates=self.n_candidates,
            top_n_factor=self.top_n_factor,
        )


@dg.asset(partitions_def=experiments, group_name="experiments", kinds={"json", "mlflow"})
def experiment(
    context: dg.AssetExecutionContext,
    config: ExperimentSpec,
    cluster_tokens: TokenStoreRef,
    tracker: MlflowTracker,
    storage: ClimbStorage,
) -> dg.Output[ExperimentRecord]:
    """The experiment's validated record: target, strategy, budget per round, proxy config, seed."""
    from climb_dagster.core.target_eval import check_target, open_token_store, prepare_target

    name = validate_key(context.partition_key, "experiment name")
    record = config.build(name, vocab_size=cluster_tokens.vocab_size)
    if record.n_rounds > MAX_ROUNDS:
        raise dg.Failure(
            f"experiment {name!r} asks for {record.n_rounds} rounds; this code location defines {MAX_ROUNDS}"
        )
    # Bounds before anything is written or trained: the budget against the corpus and max_budget.
    record.check_bounds(cluster_tokens.n_clusters, config.max_budget)
    check_target(record.target, storage.options())
    store = open_token_store(cluster_tokens.path, storage.options())
    target_spec = prepare_target(
        record.target,
        store.path,
        record.proxy.model.block_size,
        storage.root() / "targets" / name,
        storage.options(),
    )
    data = ExperimentRecord.prepare(record, cluster_tokens, target_spec)
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
            **tracking,
        },
    )

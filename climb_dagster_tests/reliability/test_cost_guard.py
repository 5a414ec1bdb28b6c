"""Issue 28, item 4: an experiment's cost is estimated when it is recorded, and proxies that cannot fit the
device or would train for days are refused there, before anything is written or trained.

Proves: `proxy_d_model: 1048576`, `proxy_batch_size: 10000000`, `proxy_layers: 1000000`, `proxy_steps: 10**12`
and the demo proxy with `proxy_steps: 480000` (a 10^4x typo of its 48) fail the `experiment` step in under a
second with the estimate in the message, and write no record and no target files; an admitted experiment
carries its estimate in its record and its metadata; the proxy step refuses when the memory free is below
its estimate; the paper's 64:32:16 search of 62M proxies passes the estimate on an 8-GPU node.
"""

from __future__ import annotations

import dagster as dg
import pytest

from climb_dagster.core.common.errors import ClimbInputError, ClimbResourceError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.proxy.cache import ProxyCache
from climb_dagster.core.proxy.config import (
    DEFAULT_DEVICE_MEMORY,
    ProxyConfig,
    ProxyModelConfig,
    ProxyTrainConfig,
    auto_pack_size,
)
from climb_dagster.core.proxy.cost import DEFAULT_MAX_HOURS, CostLimits
from climb_dagster.core.proxy.jobs import run_proxy_job
from climb_dagster.core.proxy.records import ProxyJob
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.resources.io_manager import read_value
from climb_dagster_tests.reliability.helpers import failure_text, materialization_meta, materialize_in

DEMO_PROXY = (
    "proxy_d_model",
    "proxy_layers",
    "proxy_heads",
    "proxy_block_size",
    "proxy_batch_size",
    "proxy_steps",
)


def _step_seconds(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> float:
    """Time from the experiment step's start to its failure, from the run's event log."""
    times = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if (
            event is not None
            and event.step_key == "experiment"
            and event.event_type_value
            in (
                "STEP_START",
                "STEP_FAILURE",
            )
        ):
            times[event.event_type_value] = entry.timestamp
    return times["STEP_FAILURE"] - times["STEP_START"]


@pytest.mark.parametrize(
    ("name", "change", "needles"),
    [
        (
            "wide",
            {"proxy_d_model": 1048576},
            ["peak training memory", "exceeds the cpu device memory 16 GiB"],
        ),
        ("big-batch", {"proxy_batch_size": 10_000_000}, ["peak training memory", "batch_size"]),
        ("deep", {"proxy_layers": 1_000_000}, ["peak training memory", "n_layers"]),
        ("endless", {"proxy_steps": 10**12}, ["exceeds max_hours=72", "windows"]),
        # The demo's own proxy (the launchpad defaults) with its 48 steps typed as 480000, on this
        # machine's two cores (parallel_workers pins them: a CI machine may have more).
        (
            "typo",
            {"proxy_steps": 480_000, "rounds": [8, 4, 2], "parallel_workers": 2},
            ["exceeds max_hours=72"],
        ),
    ],
)
def test_oversized_proxies_refused_when_recorded(
    tiny_corpus: dict, name: str, change: dict, needles: list[str]
):
    spec = {**tiny_corpus["spec"], **change}
    if name == "typo":
        spec = {k: v for k, v in spec.items() if k not in DEMO_PROXY or k in change}
    result = materialize_in(tiny_corpus, ["experiment"], name, spec)
    assert not result.success
    assert _step_seconds(result, tiny_corpus["instance"]) < 1.0
    text = failure_text(result)
    assert "ClimbInputError" in text and f"experiment '{name}' refused before training" in text
    assert "Estimate: " in text and "training FLOPs" in text and "peak memory" in text
    for needle in needles:
        assert needle in text, text
    assert not (tiny_corpus["root"] / "experiment" / f"{name}.json").exists()
    assert not (tiny_corpus["root"] / "targets" / name).exists(), "partial target output"


def test_admitted_experiment_carries_its_estimate(tiny_corpus: dict):
    result = materialize_in(
        tiny_corpus, ["experiment"], "estimated", {**tiny_corpus["spec"], "max_hours": 1.0}
    )
    assert result.success
    meta = materialization_meta(result, "experiment")
    record = read_value(tiny_corpus["root"] / "experiment" / "estimated")
    assert record.cost is not None and record.cost.to_dict() == meta["cost_estimate"]
    assert record.cost.max_hours == 1.0 and record.cost.proxies == sum(tiny_corpus["spec"]["rounds"])
    assert meta["estimated_hours"] == round(record.cost.hours, 4) and meta["training_flops"] > 0


def test_proxy_step_refuses_when_free_memory_is_below_the_estimate(tiny_corpus: dict, tmp_path):
    """The proxy step's own check (an injected free-memory figure): it fails naming the estimate and what is
    free, and caches nothing, so the run can be retried where memory is free."""
    store = TokenStore.open(read_value(tiny_corpus["root"] / "cluster_tokens").path)
    proxy = ProxyConfig.tiny(store.vocab_size)
    cache = ProxyCache(tmp_path / "proxy_runs")
    weights = [1 / store.n_clusters] * store.n_clusters
    job = ProxyJob(mixture_id="r1-000", proxy_key="k", weights=weights)
    with pytest.raises(ClimbResourceError, match=r"not enough free memory .* 1 MiB free"):
        run_proxy_job(job, store, proxy, 0, lambda model: 0.0, cache, free_memory=2**20)
    assert cache.get("k") is None


def paper_proxy(tokens: int) -> ProxyConfig:
    """A 62M-parameter Llama proxy: the CLIMB paper's smaller proxy size, shaped like NVIDIA's released
    Nemotron-CLIMB proxies (32 layers, narrow); d_ff = 3 d_model as the launchpad builds it, a 32k
    vocabulary, 2048-token windows, trained on `tokens` tokens each on a GPU."""
    model = ProxyModelConfig(
        vocab_size=32_000, d_model=384, n_layers=32, n_heads=6, block_size=2048, d_ff=1152
    )
    train = ProxyTrainConfig(batch_size=16, device="cuda")
    return ProxyConfig(model=model, train=train).with_token_budget(tokens)


def test_paper_schedule_of_62m_proxies_passes_on_a_gpu_node():
    proxy = paper_proxy(5 * 10**9)  # README "Running at scale": 5B tokens per proxy
    non_embedding = proxy.model.n_params - proxy.model.vocab_size * proxy.model.d_model
    assert abs(non_embedding - 62e6) < 1e6
    exp = ExperimentConfig(
        "paper", TargetConfig(documents_path="t.parquet"), rounds=(64, 32, 16), proxy=proxy
    )
    node = CostLimits(parallel_workers=8)  # one 8-GPU node, each GPU an 80 GB H100 at the default rate
    cost = exp.check_cost(node)
    assert cost.device == "cuda" and cost.precision == "bf16" and cost.proxies == 112
    assert cost.peak_bytes_per_step <= DEFAULT_DEVICE_MEMORY["cuda"] and cost.hours < DEFAULT_MAX_HOURS
    assert cost.pack_size == auto_pack_size(proxy, DEFAULT_DEVICE_MEMORY["cuda"])
    with pytest.raises(ClimbInputError, match="exceeds max_hours"):
        exp.check_cost(CostLimits(parallel_workers=1))

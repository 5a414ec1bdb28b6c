"""The launchpad (ExperimentSpec) writes no default of its own: each field's default is the core config's it
is passed to, and build() passes every field there (issue 25, item 4)."""

from __future__ import annotations

import pytest

from climb_dagster.assets.experiments import FIELDS, LAUNCHPAD_ONLY, ExperimentSpec
from climb_dagster.assets.targets import DocumentsLossTarget
from climb_dagster.core.experiment.config import DEFAULT_MAX_BUDGET, ExperimentConfig
from climb_dagster.core.proxy.config import ProxyConfig, ProxyModelConfig
from climb_dagster.core.proxy.cost import CostLimits

TARGET = DocumentsLossTarget(documents_path="t.parquet")


def _core(config: ExperimentConfig) -> dict[str, object]:
    return {"experiment": config, "model": config.proxy.model, "train": config.proxy.train, "proxy": config.proxy}


def test_every_launchpad_default_is_its_core_configs_default() -> None:
    """Iterates over the launchpad's fields: a new one must say where it goes (FIELDS) or be launchpad-only."""
    core = {**_core(ExperimentConfig("x", TARGET.build())), "limits": CostLimits()}
    spec = ExperimentSpec(target=TARGET)
    for name, field in ExperimentSpec.model_fields.items():
        if name in LAUNCHPAD_ONLY:
            continue
        assert name in FIELDS, f"launchpad field {name!r} is not mapped to a core config field"
        config, name_there = FIELDS[name]
        default = getattr(spec, name)
        assert (tuple(default) if name == "rounds" else default) == getattr(core[config], name_there), name
        assert field.default == default, name
    assert spec.max_budget == DEFAULT_MAX_BUDGET
    assert set(FIELDS) | set(LAUNCHPAD_ONLY) == set(ExperimentSpec.model_fields)


def test_the_launchpads_defaults_build_the_core_default_experiment() -> None:
    vocab = ProxyModelConfig().vocab_size
    built = ExperimentSpec(target=TARGET).build("x", vocab_size=vocab)
    assert built == ExperimentConfig("x", TARGET.build(), proxy=ProxyConfig(model=ProxyModelConfig(vocab)))


def test_build_passes_every_field_to_its_core_config() -> None:
    values = {
        "strategy": "regmix",
        "rounds": [7],
        "seed": 3,
        "n_candidates": 500,
        "top_n_factor": 2.5,
        "reuse": False,
        "reuse_max_error": 0.3,
        "reuse_min_overlap": 0.8,
        "reuse_freeze": True,
        "proxy_d_model": 64,
        "proxy_layers": 3,
        "proxy_heads": 2,
        "proxy_block_size": 64,
        "proxy_batch_size": 4,
        "proxy_steps": 3,
        "proxy_lr": 1e-3,
        "proxy_threads": 2,
        "proxy_device": "cuda",
        "proxy_precision": "bf16",
        "proxy_compile": "off",
        "proxy_activation_checkpointing": True,
        "proxy_pack_size": 2,
        "proxy_base_model": "s3://bucket/base",
        "max_hours": 100.0,
        "proxy_device_memory_gib": 8.0,
        "proxy_device_tflops": 0.5,
        "parallel_workers": 3,
    }
    assert set(values) == set(FIELDS), "give each launchpad field a non-default value here"
    spec = ExperimentSpec(target=TARGET, **values)
    built = spec.build("x", vocab_size=512)
    core = {**_core(built), "limits": spec.limits()}
    for name, (config, name_there) in FIELDS.items():
        value = getattr(core[config], name_there)
        assert (list(value) if name == "rounds" else value) == values[name], name
    # The launchpad's derived rules: feed-forward width 3 x d_model, warmup at most the steps.
    assert built.proxy.model.d_ff == 192 and built.proxy.train.warmup_steps == 3
    assert built.proxy.model.vocab_size == 512


@pytest.mark.parametrize("steps", [2, 48])
def test_warmup_is_the_core_default_unless_the_steps_are_fewer(steps: int) -> None:
    built = ExperimentSpec(target=TARGET, proxy_steps=steps).build("x", vocab_size=512)
    assert built.proxy.train.warmup_steps == min(steps, ProxyConfig().train.warmup_steps)

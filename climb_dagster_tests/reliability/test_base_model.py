"""Issue 28, item 3: a `proxy_base_model` that does not exist, is not a checkpoint, holds only pickled weights,
is truncated, or has other sizes than the proxy config is refused when the experiment is recorded, naming the
location and the values, before any proxy trains (it used to fail in round 1, once per proxy)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from climb_dagster_tests.reliability.helpers import failure_text, files_under, materialize_in


@pytest.fixture(scope="module")
def checkpoints(tiny_corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real Hugging Face checkpoints: one of the tiny experiment's sizes, one twice as wide, and damaged copies."""
    import torch

    from climb_dagster.core.proxy.config import ProxyModelConfig
    from climb_dagster.core.proxy.model import build_model

    record = json.loads((tiny_corpus["root"] / "experiment" / "base.json").read_text())
    sizes = record["proxy"]["model"]
    tmp = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name, d_model in (("good", sizes["d_model"]), ("wide", 2 * sizes["d_model"])):
        cfg = ProxyModelConfig(**{**sizes, "d_model": d_model, "d_ff": 3 * d_model})
        build_model(cfg, seed=0).save_pretrained(str(tmp / name))
        out[name] = tmp / name
    out["truncated"] = Path(shutil.copytree(out["good"], tmp / "truncated"))
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out["pickled"] = tmp / "pickled"
    out["pickled"].mkdir()
    shutil.copy(out["good"] / "config.json", out["pickled"] / "config.json")
    torch.save({"w": torch.zeros(2)}, out["pickled"] / "pytorch_model.bin")
    out["file"] = out["good"] / "config.json"
    out["d"] = sizes["d_model"]
    return out


def _spec(corpus: dict, base_model: str) -> dict:
    return {**corpus["spec"], "proxy_base_model": base_model}


def test_a_matching_safetensors_checkpoint_is_accepted(tiny_corpus: dict, checkpoints: dict):
    result = materialize_in(
        tiny_corpus, ["experiment"], "base-good", _spec(tiny_corpus, str(checkpoints["good"]))
    )
    assert result.success


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("missing", ["proxy_base_model '{path}' not found"]),
        ("etc", ["proxy_base_model '/etc' is not a Hugging Face checkpoint: it holds no config.json"]),
        ("file", ["proxy_base_model '{path}' is a file; give the checkpoint folder"]),
        ("wide", ["does not match the proxy config: d_model {w} in the checkpoint vs {d} in the config",
                  "d_ff {w_ff} in the checkpoint vs {d_ff} in the config", "proxy_d_model"]),
        ("pickled", ["holds no model.safetensors", "['pytorch_model.bin']: pickled weights are never loaded"]),
        ("truncated", ["{path}/model.safetensors is incomplete or damaged: its header describes"]),
    ],
)  # fmt: skip
def test_bad_base_model_is_refused_before_training(
    tiny_corpus: dict, checkpoints: dict, tmp_path: Path, case: str, needles: list[str]
):
    path = {"missing": str(tmp_path / "nope"), "etc": "/etc"}.get(case) or str(checkpoints[case])
    before = files_under(tiny_corpus["root"])
    result = materialize_in(tiny_corpus, ["experiment"], f"base-{case}", _spec(tiny_corpus, path))
    assert not result.success
    text = failure_text(result)
    assert "ClimbInputError" in text
    for needle in needles:
        d = checkpoints["d"]
        assert needle.format(path=path, d=d, w=2 * d, d_ff=3 * d, w_ff=6 * d) in text, text
    assert files_under(tiny_corpus["root"]) == before, "nothing is written, no proxy trains"

"""The base checkpoint checked without loading it (core/proxy/checkpoint.py): safetensors only, whole, sharded
or not, local or remote, of the proxy's sizes; `load_model` never unpickles weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.checkpoint import check_base_model
from climb_dagster.core.proxy.config import ProxyModelConfig

CFG = ProxyModelConfig.tiny(vocab_size=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from climb_dagster.core.proxy.model import build_model

    path = tmp_path_factory.mktemp("ckpt") / "base"
    build_model(CFG, seed=0).save_pretrained(str(path))
    return path


def test_a_whole_checkpoint_passes_locally_and_remotely(ckpt: Path):
    assert check_base_model(str(ckpt), CFG)["hidden_size"] == CFG.d_model
    remote = "memory://climb-unit/base-ckpt"
    storage.upload_dir(ckpt, storage.make_path(remote), kind="checkpoint")
    check_base_model(remote, CFG)
    with pytest.raises(ClimbInputError, match="proxy_base_model 'memory://climb-unit/nope' not found"):
        check_base_model("memory://climb-unit/nope", CFG)


def test_sharded_checkpoints_are_read_through_their_index(ckpt: Path, tmp_path: Path):
    sharded = Path(shutil.copytree(ckpt, tmp_path / "sharded"))
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00001.safetensors")
    index = {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00001.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    check_base_model(str(sharded), CFG)
    index["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors"
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ClimbInputError, match=r"names missing shards \['../elsewhere.safetensors'\]"):
        check_base_model(str(sharded), CFG)


def test_damaged_weights_are_refused(ckpt: Path, tmp_path: Path):
    bad = Path(shutil.copytree(ckpt, tmp_path / "bad"))
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    for damaged, needle in [
        (data + b"\0", "incomplete or damaged"),
        (data[:-1], "incomplete or damaged"),
        (b"\xff" * 8 + data[8:], "bad header length"),
        (data[:8] + b"{" * (len(data) - 8), "header"),
    ]:
        weights.write_bytes(damaged)
        with pytest.raises(ClimbInputError, match=needle):
            check_base_model(str(bad), CFG)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_weights_are_refused_and_never_unpickled(ckpt: Path, tmp_path: Path):
    import torch

    from climb_dagster.core.proxy.model import load_model

    marker = tmp_path / "pwned"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(ckpt / "config.json", pickled / "config.json")
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, pickled / "pytorch_model.bin")
    with pytest.raises(ClimbInputError, match=r"\['pytorch_model.bin'\]: pickled weights are never loaded"):
        check_base_model(str(pickled), CFG)
    with pytest.raises(OSError):
        load_model(pickled)
    assert not marker.exists()

"""The base checkpoint proxies continue from, checked without loading it (no torch): a Hugging Face folder
whose config.json has the proxy's sizes and whose weights are whole safetensors files (never pickled .bin)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from upath import UPath

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.config import ProxyModelConfig

# ProxyModelConfig field -> the name in a Hugging Face Llama config.
HF_SIZES = {
    "vocab_size": "vocab_size",
    "d_model": "hidden_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "d_ff": "intermediate_size",
}
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLED = (
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "model.ckpt",
    "tf_model.h5",
    "flax_model.msgpack",
)
MAX_HEADER = 100 << 20  # safetensors refuses larger headers too


def size_mismatch(hf_config: Mapping[str, Any], cfg: ProxyModelConfig) -> dict[str, tuple[Any, int]]:
    """{field: (checkpoint's value, config's value)} for each proxy size the checkpoint does not have."""
    got = {name: hf_config.get(hf) for name, hf in HF_SIZES.items()}
    return {name: (got[name], getattr(cfg, name)) for name in HF_SIZES if got[name] != getattr(cfg, name)}


def mismatch_message(source: str, diff: Mapping[str, tuple[Any, int]]) -> str:
    sizes = ", ".join(
        f"{name} {have} in the checkpoint vs {want} in the config" for name, (have, want) in diff.items()
    )
    return (
        f"checkpoint {source} does not match the proxy config: {sizes}; continuing training needs the same "
        "shape (experiment fields proxy_d_model, proxy_layers, proxy_heads; d_ff is 3 x d_model; vocab_size is "
        "the proxy tokenizer's)"
    )


def check_base_model(
    location: str, cfg: ProxyModelConfig, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Raise ClimbInputError naming the location and the value at fault unless `location` is a Hugging Face
    checkpoint folder with safetensors weights, whole, of the sizes in `cfg`; return its config.json."""
    path = storage.make_path(location, storage_options, what="proxy base model")
    with storage.storage_errors(path, "reading proxy base model"):
        if not path.exists():
            raise ClimbInputError(f"proxy_base_model {location!r} not found")
        if not path.is_dir():
            raise ClimbInputError(
                f"proxy_base_model {location!r} is a file; give the checkpoint folder (config.json + {WEIGHTS})"
            )
        hf_config = _config(path, location)
        shards = _shards(path, location)
        for shard in shards:
            _check_safetensors(shard, f"{location}/{shard.name}")
    diff = size_mismatch(hf_config, cfg)
    if diff:
        raise ClimbInputError(mismatch_message(repr(location), diff))
    return hf_config


def _config(path: UPath, location: str) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ClimbInputError(
            f"proxy_base_model {location!r} is not a Hugging Face checkpoint: it holds no config.json"
        )
    try:
        data = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClimbInputError(f"proxy_base_model {location!r}: config.json is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ClimbInputError(f"proxy_base_model {location!r}: config.json is not a JSON object")
    return data


def _shards(path: UPath, location: str) -> list[UPath]:
    if (path / WEIGHTS).is_file():
        return [path / WEIGHTS]
    if (path / WEIGHTS_INDEX).is_file():
        try:
            weight_map = json.loads((path / WEIGHTS_INDEX).read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClimbInputError(
                f"proxy_base_model {location!r}: {WEIGHTS_INDEX} is malformed ({exc})"
            ) from exc
        bad = [n for n in names if "/" in n or not n.endswith(".safetensors") or not (path / n).is_file()]
        if bad or not names:
            raise ClimbInputError(
                f"proxy_base_model {location!r}: {WEIGHTS_INDEX} names missing shards {bad}"
            )
        return [path / n for n in names]
    pickled = [n for n in PICKLED if (path / n).exists()]
    found = (
        f" (it holds {pickled}: pickled weights are never loaded; save them as safetensors)"
        if pickled
        else ""
    )
    raise ClimbInputError(f"proxy_base_model {location!r} holds no {WEIGHTS} or {WEIGHTS_INDEX}{found}")


def _check_safetensors(path: UPath, name: str) -> None:
    """A safetensors file is 8 bytes of header length, the JSON header, then exactly the tensors' bytes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(MAX_HEADER, size - 8):
            raise ClimbInputError(f"{name} is not a safetensors file (bad header length, {size} bytes)")
        try:
            header = json.loads(f.read(n))
            end = max(
                (int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ClimbInputError(f"{name} is not a safetensors file (header: {exc})") from exc
    if 8 + n + end != size:
        raise ClimbInputError(
            f"{name} is incomplete or damaged: its header describes {8 + n + end} bytes, the file has {size}"
        )

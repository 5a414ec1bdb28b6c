"""The IO manager: every asset value goes to `<base>/<asset key>/<partition>.<ext>` without pickle.

| value                      | file                          |
|----------------------------|-------------------------------|
| polars.DataFrame           | .parquet (zstd)               |
| numpy.ndarray              | .npy (loaded as a read-only memmap; remote files cached locally) |
| ModelText (LightGBM, ...)  | .model.txt (+ .model.<i>.txt per extra ensemble member) + .model.json |
| TensorBundle               | .safetensors                  |
| dict / list / str / number | .json                         |
| a record of core.experiment.records | .json (its fields + `record_type`; read back as that record) |
"""

from __future__ import annotations

import io
import json
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field
from upath import UPath

from climb_dagster.core.common.artifacts import ModelText, TensorBundle
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.keys import validate_key
from climb_dagster.core.experiment.records import RECORD_TYPE_KEY, RECORD_TYPES
from climb_dagster.core.io import storage

_RECORDS = tuple(RECORD_TYPES.values())

# Probe order on load: a value is stored with exactly one of these suffixes.
SUFFIXES = (".parquet", ".npy", ".model.txt", ".safetensors", ".json")


def _suffix_for(obj: Any) -> str:
    if isinstance(obj, pl.DataFrame):
        return ".parquet"
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays would need pickle; store numeric arrays or a DataFrame")
        return ".npy"
    if isinstance(obj, ModelText):
        return ".model.txt"
    if isinstance(obj, TensorBundle):
        return ".safetensors"
    if isinstance(obj, (dict, list, str, int, float, bool, *_RECORDS)):
        return ".json"
    raise TypeError(
        f"the climb IO manager cannot store {type(obj).__name__} (no pickle): return a polars DataFrame, "
        "a numpy array, ModelText, TensorBundle, a record of core.experiment.records or JSON-compatible data"
    )


def write_value(path: UPath, obj: Any) -> UPath:
    """Write `obj` at `path` + its suffix, atomically. Returns the final path."""
    suffix = _suffix_for(obj)
    target = path.with_name(path.name + suffix)
    if suffix == ".parquet":
        buf = io.BytesIO()
        obj.write_parquet(buf, compression="zstd")
        storage.atomic_write_bytes(target, buf.getvalue())
    elif suffix == ".npy":
        storage.atomic_write(target, lambda f: np.save(f, np.ascontiguousarray(obj), allow_pickle=False))
    elif suffix == ".model.txt":
        for i, text in enumerate(obj.texts[1:], start=1):
            storage.atomic_write_text(path.with_name(f"{path.name}.model.{i}.txt"), text)
        sidecar = {"n_models": len(obj.texts), "metadata": obj.metadata}
        storage.atomic_write_text(path.with_name(path.name + ".model.json"), json.dumps(sidecar, indent=1))
        # The main file last: its presence marks the whole set as complete.
        storage.atomic_write_text(target, obj.texts[0])
    elif suffix == ".safetensors":
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in obj.tensors.items()}
        storage.atomic_write_bytes(target, save(arrays, metadata=obj.metadata or None))
    else:
        if isinstance(obj, _RECORDS):
            obj = {RECORD_TYPE_KEY: type(obj).__name__, **obj.to_dict()}
        storage.atomic_write_text(target, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False))
    return target


def _from_json(target: UPath, data: Any) -> Any:
    """A stored record back as its type; any other JSON value as it is."""
    if not isinstance(data, dict) or RECORD_TYPE_KEY not in data:
        return data
    name = data.pop(RECORD_TYPE_KEY)
    if name not in RECORD_TYPES:
        raise ClimbInputError(f"{target}: unknown {RECORD_TYPE_KEY} {name!r}; known: {sorted(RECORD_TYPES)}")
    return RECORD_TYPES[name].from_dict(data)


def read_value(path: UPath) -> Any:
    """Read the value stored at `path` (without suffix); FileNotFoundError when none is there."""
    for suffix in SUFFIXES:
        target = path.with_name(path.name + suffix)
        if not target.exists():
            continue
        if suffix == ".parquet":
            return pl.read_parquet(io.BytesIO(target.read_bytes()))
        if suffix == ".npy":
            try:
                return np.load(storage.local_copy(target), mmap_mode="r", allow_pickle=False)
            except ValueError as exc:  # an object array: loading it would unpickle (run) code
                raise ClimbInputError(
                    f"{target}: refusing to load a pickled object array (only numeric .npy is read): {exc}"
                ) from exc
        if suffix == ".model.txt":
            sidecar = json.loads(path.with_name(path.name + ".model.json").read_text())
            extra = [
                path.with_name(f"{path.name}.model.{i}.txt").read_text()
                for i in range(1, sidecar["n_models"])
            ]
            return ModelText(texts=(target.read_text(), *extra), metadata=sidecar["metadata"])
        if suffix == ".safetensors":
            from safetensors.numpy import load

            data = target.read_bytes()
            # safetensors.numpy.load drops the metadata; it sits in the JSON header after an 8-byte length.
            header_len = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
            return TensorBundle(tensors=load(data), metadata=meta)
        return _from_json(target, json.loads(target.read_text()))
    raise FileNotFoundError(f"no stored value at {path} (looked for {', '.join(SUFFIXES)})")


LAZY = "climb/lazy"


class StoredValue:
    """A handle to a stored value, read only when `.load()` is called.

    Inputs declared with `dg.AssetIn(metadata={LAZY: True})` receive these instead of values, so an asset
    that fans in over every crawl drop holds one drop at a time (bounded memory).
    """

    def __init__(self, path: UPath) -> None:
        self.path = path

    def load(self) -> Any:
        return read_value(self.path)

    def __repr__(self) -> str:
        return f"StoredValue({self.path})"


class _WithoutPathMetadata:
    """An output context that drops UPathIOManager's `path` entry: it names the value's path without the
    suffix this IO manager picks per type, a file that never exists. `stored_at` names the real one."""

    def __init__(self, context: dg.OutputContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def add_output_metadata(self, metadata: dict[str, Any]) -> None:
        kept = {k: v for k, v in metadata.items() if k != "path"}
        if kept:
            self._context.add_output_metadata(kept)


class ClimbIOManager(dg.UPathIOManager):
    extension = None

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        super().handle_output(_WithoutPathMetadata(context), obj)  # type: ignore[arg-type]

    def make_safe_partition_path(self, base_path: UPath, partition: str) -> UPath:
        return base_path / validate_key(partition)

    def make_directory(self, path: UPath) -> None:
        # Object stores have no folders, and s3fs's mkdir creates a missing *bucket*: only local folders.
        if storage.is_local(path):
            path.mkdir(parents=True, exist_ok=True)

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if obj is None:
            return
        with storage.storage_errors(path, "writing asset value"):
            target = write_value(path, obj)
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(target))})

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        with storage.storage_errors(path, "reading asset value", keep=(FileNotFoundError,)):
            if (context.definition_metadata or {}).get(LAZY):
                if not any(path.with_name(path.name + s).exists() for s in SUFFIXES):
                    raise FileNotFoundError(f"no stored value at {path}")
                return StoredValue(path)
            value = read_value(path)
        expected = getattr(context.dagster_type, "typing_type", None)
        if isinstance(value, dict) and expected in RECORD_TYPES.values():
            # Written before this asset's output became a record (no record_type tag): read as the record.
            return expected.from_dict(value)
        return value


class ClimbIOManagerFactory(dg.ConfigurableIOManagerFactory):
    """Stores assets under a local folder (default) or `s3://bucket/prefix` (production)."""

    base_path: str = Field(description="Folder or s3://bucket/prefix under which every asset is stored.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto); null: AWS's default."
    )
    s3_region: str | None = Field(default=None, description="S3 region; null: from the environment.")

    def create_io_manager(self, context: dg.InitResourceContext) -> ClimbIOManager:
        options = storage.s3_storage_options(self.s3_endpoint_url, self.s3_region)
        return ClimbIOManager(base_path=storage.make_path(self.base_path, options))

"""Every environment variable the package reads, in one frozen record (README "Configuration" lists them).

`Settings.from_env()` reads the environment once per call; callers take one snapshot and pass it on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.redact import refuse_credentials

DEPLOYMENTS = ("local", "production")
EXECUTORS = ("multiprocess", "in_process", "k8s")

# Field -> environment variable.
VARIABLES = {
    "deployment": "CLIMB_DEPLOYMENT",
    "home": "CLIMB_HOME",
    "storage_url": "CLIMB_STORAGE_URL",
    "landing_url": "CLIMB_LANDING_URL",
    "s3_endpoint_url": "CLIMB_S3_ENDPOINT_URL",
    "s3_region": "CLIMB_S3_REGION",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "embed_model_path": "CLIMB_EMBED_MODEL_PATH",
    "embed_device": "CLIMB_EMBED_DEVICE",
    "embed_precision": "CLIMB_EMBED_PRECISION",
    "executor": "CLIMB_EXECUTOR",
    "k8s_namespace": "CLIMB_K8S_NAMESPACE",
    "gpu_node_selector": "CLIMB_GPU_NODE_SELECTOR",
    "max_gpu_steps": "CLIMB_MAX_GPU_STEPS",
    "cache_dir": "CLIMB_CACHE_DIR",
    "copy_caps": "CLIMB_COPY_CAPS",
}

GIB = 1024**3


@dataclass(frozen=True)
class CopyCap:
    """The most a folder copy of one kind may hold; a larger source is refused before anything is copied."""

    max_bytes: int
    max_files: int

    def describe(self) -> str:
        return f"{self.max_bytes / GIB:g} GiB, {self.max_files} files"


# Folders the pipeline copies, by kind. Task folders are small (YAML + JSONL); a checkpoint of a 7B model in
# fp32 is 28 GB; a token store holds one file per super-cluster. CLIMB_COPY_CAPS overrides any of them.
COPY_CAPS = {
    "lm_eval_tasks": CopyCap(1 * GIB, 10_000),
    "checkpoint": CopyCap(64 * GIB, 1_000),
    "tokenizer": CopyCap(1 * GIB, 100),
    "token_store": CopyCap(1024 * GIB, 100_000),
}


def parse_copy_caps(text: str) -> dict[str, CopyCap]:
    """`kind=GiB` or `kind=GiB:files`, comma-separated (e.g. `lm_eval_tasks=4:50000,checkpoint=200`): the
    default caps with these replaced."""
    caps = dict(COPY_CAPS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, value = item.partition("=")
        kind = kind.strip()
        size, _, files = value.partition(":")
        try:
            if kind not in COPY_CAPS:
                raise ValueError(f"unknown kind {kind!r}")
            gib = float(size)
            count = int(files) if files else COPY_CAPS[kind].max_files
            if not (gib > 0 and count > 0):
                raise ValueError("sizes must be > 0")
        except ValueError as exc:
            raise ClimbInputError(
                f"CLIMB_COPY_CAPS item {item!r}: {exc}; expected kind=GiB or kind=GiB:files with kind one of "
                f"{sorted(COPY_CAPS)}"
            ) from None
        caps[kind] = CopyCap(int(gib * GIB), count)
    return caps


@dataclass(frozen=True)
class Settings:
    deployment: str = "local"
    home: str = ".climb"
    storage_url: str | None = None
    landing_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    mlflow_tracking_uri: str | None = None
    embed_model_path: str | None = None
    embed_device: str = "auto"
    embed_precision: str = "auto"
    executor: str = "multiprocess"
    k8s_namespace: str | None = None
    gpu_node_selector: str | None = None
    max_gpu_steps: int = 4
    cache_dir: str | None = None
    copy_caps: str | None = None

    def __post_init__(self) -> None:
        if self.deployment not in DEPLOYMENTS:
            raise ClimbInputError(f"CLIMB_DEPLOYMENT={self.deployment!r} is not one of {DEPLOYMENTS}")
        if self.executor not in EXECUTORS:
            raise ClimbInputError(f"CLIMB_EXECUTOR={self.executor!r} is not one of {', '.join(EXECUTORS)}")
        parse_copy_caps(self.copy_caps or "")

    def copy_cap(self, kind: str) -> CopyCap:
        """The cap of a folder copy of `kind` (a key of COPY_CAPS), CLIMB_COPY_CAPS applied."""
        return parse_copy_caps(self.copy_caps or "")[kind]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of this process; an unset or empty variable takes the default."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, name in VARIABLES.items():
            value = env.get(name)
            if value:
                values[field] = value
        if "max_gpu_steps" in values:
            try:
                values["max_gpu_steps"] = int(values["max_gpu_steps"])
            except ValueError:
                raise ClimbInputError(
                    f"CLIMB_MAX_GPU_STEPS must be an integer, got {values['max_gpu_steps']!r}"
                ) from None
        values["home"] = os.path.abspath(str(values.get("home", cls.home)))
        return cls(**values)  # type: ignore[arg-type]

    def refuse_credentials(self) -> None:
        """Refuse storage, landing and S3 endpoint URLs that embed credentials (the message names the
        variable, secret masked): every path, log line and metadata entry derived from them would carry it.
        Credentials come from the environment / instance profile only."""
        for field in ("storage_url", "landing_url", "s3_endpoint_url"):
            refuse_credentials(getattr(self, field) or "", VARIABLES[field])

    # Where the local deployment keeps things when no URL says otherwise (every URL applies locally too:
    # a local run may keep its assets elsewhere, even on S3).
    def local_storage(self) -> str:
        return self.storage_url or os.path.join(self.home, "storage")

    def local_landing(self) -> str:
        return self.landing_url or os.path.join(self.home, "landing")

    def local_mlflow(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{os.path.join(self.home, 'mlflow.db')}"

    def local_mlflow_artifacts(self) -> str:
        """Artifacts of a local MLflow store (sqlite or file), whatever MLFLOW_TRACKING_URI names: under the
        home, never ./mlruns of the working directory."""
        return os.path.join(self.home, "mlflow-artifacts")

    def local_cache_dir(self) -> str:
        return self.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "climb-dagster")

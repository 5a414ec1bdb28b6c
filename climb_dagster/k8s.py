"""Kubernetes settings for the heavy steps: op tags (GPU requests, node selectors) and the step executor.

Plain dicts, so asset modules can import them without loading `dagster_k8s` or the Kubernetes client.

How a step lands on a GPU node:
- the asset carries `op_tags=EMBEDDING_OP_TAGS` (or `PROXY_OP_TAGS`);
- its job runs under `k8s_job_executor` (one Kubernetes Job per step), chosen by `heavy_job_executor()`
  when `CLIMB_EXECUTOR=k8s` (set by the Helm values, see infra/helm/values.yaml);
- the executor renders the `dagster-k8s/config` tag into the step's pod: `nvidia.com/gpu` limit, CPU and
  memory requests, node selector and tolerations. Without Kubernetes the tags are inert metadata.

The tag `climb/accelerator: gpu` is what the executor's `tag_concurrency_limits` count, so one run never
asks for more GPU pods than `CLIMB_MAX_GPU_STEPS` at once; runs themselves are limited by the queued run
coordinator on the run tags in `GPU_RUN_TAGS` (infra/dagster.yaml).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from climb_dagster.core.io.settings import Settings

K8S_CONFIG_TAG = "dagster-k8s/config"
ACCELERATOR_TAG = "climb/accelerator"
GPU_RESOURCE = "nvidia.com/gpu"

# The label most GPU node pools carry (GKE: cloud.google.com/gke-accelerator; EKS/NVIDIA GPU operator:
# nvidia.com/gpu.present). Override per cluster with CLIMB_GPU_NODE_SELECTOR="key=value,key2=value2".
DEFAULT_GPU_NODE_SELECTOR: dict[str, str] = {"nvidia.com/gpu.present": "true"}
# GPU nodes are usually tainted so that CPU pods stay off them.
DEFAULT_GPU_TOLERATIONS: list[dict[str, str]] = [
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
]

# Run tags of jobs that contain GPU steps: the queued run coordinator limits how many such runs are in
# progress (infra/dagster.yaml, infra/helm/values.yaml).
GPU_RUN_TAGS: dict[str, str] = {ACCELERATOR_TAG: "gpu"}


def _check_quantity(name: str, value: str | int | float) -> str:
    text = str(value).strip()
    if not text or text.startswith("-"):
        raise ValueError(f"{name} must be a positive Kubernetes quantity such as '2' or '8Gi', got {value!r}")
    return text


def parse_node_selector(text: str) -> dict[str, str]:
    """`"k1=v1,k2=v2"` -> {"k1": "v1", "k2": "v2"}; raises ValueError naming the bad item."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"node selector item {item!r} is not 'key=value' (in {text!r})")
        out[key.strip()] = value.strip()
    return out


def _resources(cpu: str | int | float, memory: str, extra_limits: Mapping[str, Any] | None) -> dict[str, Any]:
    requests = {"cpu": _check_quantity("cpu", cpu), "memory": _check_quantity("memory", memory)}
    # Memory limit = request: a step that outgrows it is killed with a clear OOMKilled instead of
    # starving its neighbours. CPU is left unlimited (throttling hurts more than it protects).
    limits: dict[str, Any] = {"memory": requests["memory"], **(extra_limits or {})}
    return {"requests": requests, "limits": limits}


def cpu_op_tags(
    cpu: str | int | float = "2",
    memory: str = "8Gi",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Op tags for a CPU step pod: requests (and a memory limit), optional node selector/tolerations."""
    config: dict[str, Any] = {"container_config": {"resources": _resources(cpu, memory, None)}}
    pod_spec: dict[str, Any] = {}
    if node_selector:
        pod_spec["node_selector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return {K8S_CONFIG_TAG: config, ACCELERATOR_TAG: "cpu"}


def gpu_op_tags(
    gpus: int = 1,
    cpu: str | int | float = "4",
    memory: str = "32Gi",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Op tags for a GPU step pod.

    Args:
        gpus: whole GPUs (`nvidia.com/gpu` is an extended resource: limit only, requests follow it).
        node_selector: labels of the GPU node pool; default `DEFAULT_GPU_NODE_SELECTOR`.
        tolerations: default tolerates the usual `nvidia.com/gpu` taint.
    """
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise ValueError(f"gpus must be a positive integer, got {gpus!r}")
    selector = dict(DEFAULT_GPU_NODE_SELECTOR if node_selector is None else node_selector)
    tols = [dict(t) for t in (DEFAULT_GPU_TOLERATIONS if tolerations is None else tolerations)]
    config: dict[str, Any] = {
        "container_config": {"resources": _resources(cpu, memory, {GPU_RESOURCE: gpus})},
        "pod_spec_config": {"node_selector": selector, "tolerations": tols},
    }
    return {K8S_CONFIG_TAG: config, ACCELERATOR_TAG: "gpu"}


def _env_node_selector() -> dict[str, str] | None:
    text = Settings.from_env().gpu_node_selector
    return parse_node_selector(text) if text else None


# Embedding a crawl drop with MiniLM: one GPU, modest host memory (batches stream from storage).
EMBEDDING_OP_TAGS: dict[str, Any] = gpu_op_tags(
    gpus=1, cpu="4", memory="24Gi", node_selector=_env_node_selector()
)
# One proxy LM training: one GPU, more host memory for the token memmaps of the mixture.
PROXY_OP_TAGS: dict[str, Any] = gpu_op_tags(
    gpus=1, cpu="8", memory="48Gi", node_selector=_env_node_selector()
)
# CPU-heavy steps (FAISS k-means on CPU, LightGBM predictor fits).
CLUSTERING_OP_TAGS: dict[str, Any] = cpu_op_tags(cpu="8", memory="32Gi")
# One drop's CPU work (tokenizing it, exporting its share): memory grows with the drop, not the corpus.
DROP_OP_TAGS: dict[str, Any] = cpu_op_tags(cpu="2", memory="8Gi")


def k8s_executor_config(
    namespace: str | None = None,
    max_concurrent: int = 16,
    max_gpu_steps: int | None = None,
    env_secrets: Sequence[str] = ("climb-s3",),
    env_config_maps: Sequence[str] = ("climb-env",),
) -> dict[str, Any]:
    """Config for `dagster_k8s.k8s_job_executor` (validated in climb_dagster_tests/test_infra.py).

    Every step gets default CPU requests (`step_k8s_config`); op tags of GPU steps add to them. The step
    pods read S3 (and MLflow) credentials from the named Secrets and settings from the ConfigMap, the
    same names as infra/helm/values.yaml; namespace, image and service account come from the run.
    """
    gpu_limit = max_gpu_steps if max_gpu_steps is not None else Settings.from_env().max_gpu_steps
    if gpu_limit < 1 or max_concurrent < 1:
        raise ValueError(
            f"limits must be >= 1, got max_concurrent={max_concurrent}, max_gpu_steps={gpu_limit}"
        )
    config: dict[str, Any] = {
        "max_concurrent": max_concurrent,
        "tag_concurrency_limits": [{"key": ACCELERATOR_TAG, "value": "gpu", "limit": gpu_limit}],
        "env_secrets": list(env_secrets),
        "env_config_maps": list(env_config_maps),
        "step_k8s_config": {
            "container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"}}},
            # Finished step Jobs are garbage-collected after an hour; logs are in Dagster already.
            "job_spec_config": {"ttl_seconds_after_finished": 3600, "backoff_limit": 0},
        },
        "retries": {"enabled": {}},
    }
    ns = namespace or Settings.from_env().k8s_namespace
    if ns:
        config["job_namespace"] = ns
    return copy.deepcopy(config)


def executor_name() -> str:
    """`CLIMB_EXECUTOR`: `multiprocess` (default) or `k8s` (one pod per step)."""
    return Settings.from_env().executor


def heavy_job_run_tags() -> dict[str, str]:
    """Run tags of a job with GPU steps: `GPU_RUN_TAGS` on Kubernetes (where its proxy and embedding steps
    request GPU pods and the queued run coordinator limits such runs), none elsewhere: a local run trains on
    whatever `proxy_device` says, and a tag claiming a GPU there would be false."""
    return dict(GPU_RUN_TAGS) if executor_name() == "k8s" else {}


def heavy_job_executor():
    """The executor for jobs with GPU steps: `k8s_job_executor` on Kubernetes, else multiprocess.

    Usage: `dg.define_asset_job("embed_job", selection=..., executor_def=heavy_job_executor(),
    tags=heavy_job_run_tags())`.
    `dagster_k8s` is imported only when CLIMB_EXECUTOR=k8s.
    """
    import dagster as dg

    name = executor_name()
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="climb_k8s")
    if name == "in_process":
        return dg.in_process_executor
    return dg.multiprocess_executor

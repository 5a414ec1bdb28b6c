"""Issue 15, item 6: every documented setting works in every deployment, or the README says why not.

Proves: each variable of README's configuration table changes the resource set (or executor) of both the
`local` and the `production` deployment (CLIMB_STORAGE_URL used to be ignored by `local`); CLIMB_HOME
(local only) and the k8s executor's variables say where they apply in that table's "applies to" column
and take effect there. The table and this test list the same variables, so a setting documented later
without a test fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from climb_dagster.deployments import build_resources

README = Path(__file__).resolve().parents[2] / "README.md"
PRODUCTION = {
    "CLIMB_STORAGE_URL": "s3://bucket/climb",
    "CLIMB_LANDING_URL": "s3://bucket/landing",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
}
# variable -> (value to set, where it must show up in build_resources(...))
EFFECTS = {
    "CLIMB_STORAGE_URL": (
        "s3://elsewhere/assets",
        lambda r: (r["io_manager"].base_path, r["storage"].base_path),
    ),
    "CLIMB_LANDING_URL": ("s3://elsewhere/landing", lambda r: (r["landing"].base,)),
    "CLIMB_S3_ENDPOINT_URL": (
        "http://minio:9000",
        lambda r: (r["storage"].s3_endpoint_url, r["landing"].s3_endpoint_url),
    ),
    "CLIMB_S3_REGION": ("eu-west-3", lambda r: (r["storage"].s3_region, r["io_manager"].s3_region)),
    "MLFLOW_TRACKING_URI": ("http://other-mlflow:5000", lambda r: (r["tracker"].tracking_uri,)),
    "CLIMB_EMBED_MODEL_PATH": ("/models/stella", lambda r: (r["embedder"].model_path,)),
    "CLIMB_EMBED_DEVICE": ("cpu", lambda r: (r["embedder"].device,)),
    "CLIMB_EMBED_PRECISION": ("fp32", lambda r: (r["embedder"].precision,)),
}
# Documented, with a different mechanism (checked separately below).
SPECIAL = {"CLIMB_DEPLOYMENT", "CLIMB_HOME", "CLIMB_EXECUTOR", "CLIMB_CACHE_DIR", "CLIMB_COPY_CAPS"}
# Read by the k8s executor only (README: applies to `CLIMB_EXECUTOR=k8s`).
K8S_ONLY = {"CLIMB_K8S_NAMESPACE", "CLIMB_GPU_NODE_SELECTOR", "CLIMB_MAX_GPU_STEPS"}


def _documented() -> set[str]:
    table = README.read_text().split("## Configuration", 1)[1].split("\n\n", 2)[1]
    return {
        v
        for row in table.splitlines()
        if row.startswith("| `")
        for v in re.findall(r"`([A-Z0-9_]+)`", row.split("|")[1])
    }


def test_the_readme_table_and_this_test_list_the_same_settings():
    assert _documented() == set(EFFECTS) | SPECIAL | K8S_ONLY


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in [*EFFECTS, *SPECIAL, *K8S_ONLY]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIMB_HOME", str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.parametrize("deployment", ["local", "production"])
@pytest.mark.parametrize("variable", sorted(EFFECTS))
def test_each_setting_takes_effect_in_each_deployment(
    clean_env: pytest.MonkeyPatch, deployment: str, variable: str
):
    if deployment == "production":
        for name, value in PRODUCTION.items():
            clean_env.setenv(name, value)
    value, seen = EFFECTS[variable]
    clean_env.setenv("CLIMB_DEPLOYMENT", deployment)
    clean_env.setenv(variable, value)
    assert all(v == value for v in seen(build_resources())), variable


def test_climb_home_roots_local_and_is_documented_as_unused_in_production(clean_env, tmp_path: Path):
    home = tmp_path / "home"
    local = build_resources("local")
    assert local["storage"].base_path.startswith(str(home)) and local["landing"].base.startswith(str(home))
    for name, value in PRODUCTION.items():
        clean_env.setenv(name, value)
    production = build_resources("production")
    assert str(home) not in repr(production)
    row = next(r for r in README.read_text().splitlines() if r.startswith("| `CLIMB_HOME`"))
    assert "production" in row, "README must say why CLIMB_HOME does not apply to production"


def test_climb_executor_applies_whatever_the_deployment(clean_env):
    from climb_dagster.k8s import executor_name

    for deployment in ("local", "production"):
        clean_env.setenv("CLIMB_DEPLOYMENT", deployment)
        clean_env.setenv("CLIMB_EXECUTOR", "in_process")
        assert executor_name() == "in_process"


def _applies_to(variable: str) -> str:
    row = next(r for r in README.read_text().splitlines() if r.startswith(f"| `{variable}`"))
    return row.split("|")[3]


def test_k8s_settings_take_effect_in_the_k8s_executor_config(clean_env):
    from climb_dagster.k8s import _env_node_selector, k8s_executor_config

    clean_env.setenv("CLIMB_K8S_NAMESPACE", "climb-test")
    clean_env.setenv("CLIMB_MAX_GPU_STEPS", "3")
    clean_env.setenv("CLIMB_GPU_NODE_SELECTOR", "pool=gpu")
    config = k8s_executor_config()
    assert config["job_namespace"] == "climb-test"
    assert config["tag_concurrency_limits"][0]["limit"] == 3
    assert _env_node_selector() == {"pool": "gpu"}
    assert all("CLIMB_EXECUTOR=k8s" in _applies_to(v) for v in K8S_ONLY)


def test_cache_dir_applies_whatever_the_deployment(clean_env, tmp_path: Path):
    from climb_dagster.core.io.storage import cache_dir

    for deployment in ("local", "production"):
        clean_env.setenv("CLIMB_DEPLOYMENT", deployment)
        clean_env.setenv("CLIMB_CACHE_DIR", str(tmp_path / deployment))
        assert cache_dir() == tmp_path / deployment
    assert "both" in _applies_to("CLIMB_CACHE_DIR")


def test_copy_caps_apply_whatever_the_deployment(clean_env, tmp_path: Path):
    from climb_dagster.core.common.errors import ClimbInputError
    from climb_dagster.core.io.storage import check_copy_source, make_path

    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / name).write_text("x")
    for deployment in ("local", "production"):
        clean_env.setenv("CLIMB_DEPLOYMENT", deployment)
        clean_env.setenv("CLIMB_COPY_CAPS", "tokenizer=1:2")
        with pytest.raises(ClimbInputError, match=r"tokenizer copy \(1 GiB, 2 files\)"):
            check_copy_source(make_path(folder), "tokenizer")
        clean_env.setenv("CLIMB_COPY_CAPS", "tokenizer=1:3")
        assert check_copy_source(make_path(folder), "tokenizer").files == 3
    assert "both" in _applies_to("CLIMB_COPY_CAPS")

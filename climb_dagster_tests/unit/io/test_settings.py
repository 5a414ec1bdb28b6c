"""One settings record for every environment variable: read in one module, listed in one README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.settings import VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "climb_dagster"
# Reading the environment: os.environ.get(...), os.environ[...], os.getenv(...). Writing defaults for other
# libraries (os.environ.setdefault) is not configuration and stays where it is needed.
READ = re.compile(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(")


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if READ.search(path.read_text()) and path.name != "settings.py"
    ]
    # The demo corpus builder passes PATH on to `man` (a subprocess), and the demo's instance set-up asks
    # Dagster's own DAGSTER_HOME: neither is a setting of this package.
    assert sorted(readers) == ["climb_dagster/demo/corpus/man.py", "climb_dagster/demo/instance.py"]
    demo = (PACKAGE / "demo" / "instance.py").read_text()
    assert [m.group(0) for m in re.finditer(r'os\.environ\.get\("[A-Z_]+"\)', demo)] == [
        'os.environ.get("DAGSTER_HOME")'
    ]


def test_readme_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :].split("\n\n")[1]
    for name in VARIABLES.values():
        assert f"`{name}`" in table, f"{name} is missing from README's Configuration table"


def test_from_env_reads_each_variable() -> None:
    env = {name: f"/x/{field}" for field, name in VARIABLES.items()}
    env |= {"CLIMB_DEPLOYMENT": "production", "CLIMB_EXECUTOR": "k8s", "CLIMB_MAX_GPU_STEPS": "2"}
    env |= {"CLIMB_COPY_CAPS": "checkpoint=2"}
    s = Settings.from_env(env)
    assert (s.deployment, s.executor, s.max_gpu_steps) == ("production", "k8s", 2)
    assert s.copy_cap("checkpoint").max_bytes == 2 * 1024**3
    assert s.k8s_namespace == "/x/k8s_namespace" and s.cache_dir == "/x/cache_dir" and s.home == "/x/home"
    empty = Settings.from_env({"CLIMB_S3_REGION": ""})
    assert empty.s3_region is None and empty.executor == "multiprocess" and Path(empty.home).is_absolute()
    assert empty.local_landing() == str(Path(empty.home) / "landing")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CLIMB_DEPLOYMENT": "staging"}, "CLIMB_DEPLOYMENT='staging'"),
        ({"CLIMB_EXECUTOR": "slurm"}, "CLIMB_EXECUTOR='slurm'"),
        ({"CLIMB_MAX_GPU_STEPS": "many"}, "CLIMB_MAX_GPU_STEPS must be an integer, got 'many'"),
        ({"CLIMB_COPY_CAPS": "tasks=1"}, "CLIMB_COPY_CAPS item 'tasks=1': unknown kind 'tasks'"),
        ({"CLIMB_COPY_CAPS": "checkpoint=big"}, "CLIMB_COPY_CAPS item 'checkpoint=big'"),
        ({"CLIMB_COPY_CAPS": "checkpoint=0:10"}, "sizes must be > 0"),
    ],
)
def test_bad_values_are_named(env: dict, needle: str) -> None:
    with pytest.raises(ClimbInputError, match=re.escape(needle)):
        Settings.from_env(env)


@pytest.mark.parametrize("name", ["CLIMB_STORAGE_URL", "CLIMB_LANDING_URL", "CLIMB_S3_ENDPOINT_URL"])
def test_refuse_credentials_names_the_variable_and_masks_the_secret(name: str) -> None:
    url = "s3://KEY:hunter2@bucket/x" if name != "CLIMB_S3_ENDPOINT_URL" else "http://u:hunter2@minio:9000"
    settings = Settings.from_env({name: url})
    with pytest.raises(ClimbInputError, match=name) as info:
        settings.refuse_credentials()
    assert "hunter2" not in str(info.value)
    Settings.from_env({name: "s3://bucket/x"}).refuse_credentials()


def test_storage_url_applies_to_the_local_deployment() -> None:
    assert Settings.from_env({"CLIMB_STORAGE_URL": "s3://b/assets"}).local_storage() == "s3://b/assets"
    home = Settings.from_env({"CLIMB_HOME": "/h"})
    assert home.local_storage() == "/h/storage"


def test_docs_list_the_default_copy_caps() -> None:
    from climb_dagster.core.io.settings import COPY_CAPS, GIB

    text = (ROOT / "docs" / "reliability.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|$", text, re.M))
    assert rows == {
        kind: f"{cap.max_bytes // GIB} GiB, {cap.max_files:_} files".replace("_", " ")
        for kind, cap in COPY_CAPS.items()
    }

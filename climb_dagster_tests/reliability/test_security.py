"""Security: no code-executing deserialisation, credentials never leave the environment, names are
validated before they become storage paths, services bind to the loopback."""

from __future__ import annotations

import ast
import io
import pickle
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.keys import validate_key
from climb_dagster.core.io import storage
from climb_dagster.resources.io_manager import ClimbIOManager, read_value
from climb_dagster.resources.landing import LandingZone
from climb_dagster_tests.paths import REPO_ROOT
from climb_dagster_tests.reliability.helpers import CANARY, CANARY_ENV

PACKAGE = REPO_ROOT / "climb_dagster"
PICKLE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "cloudpickle",
    "dill",
    "joblib",
    "shelve",
    "marshal",
    "jsonpickle",
}

# ------------------------------------------------------------------------------ deserialisation scan


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Code paths that can execute code while reading data, as 'file:line: what'."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{where}: imports {name}")
        if not isinstance(node, ast.Call):
            continue
        fn = _dotted(node.func)
        last = fn.rsplit(".", 1)[-1]
        if fn in ("eval", "exec", "builtins.eval", "builtins.exec"):
            found.append(f"{where}: {fn}()")
        elif fn.split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: {fn}()")
        elif fn in ("torch.load",) and not _is_const(_kw(node, "weights_only"), True):
            found.append(f"{where}: torch.load without weights_only=True")
        elif fn in ("np.load", "numpy.load") and not (
            _kw(node, "allow_pickle") is None or _is_const(_kw(node, "allow_pickle"), False)
        ):
            found.append(f"{where}: {fn} with allow_pickle")
        elif fn == "yaml.load":
            loader = _dotted(_kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else ast.Name("")))
            if loader.rsplit(".", 1)[-1] not in ("SafeLoader", "CSafeLoader"):
                found.append(f"{where}: yaml.load without SafeLoader")
        elif fn in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.load_all"):
            found.append(f"{where}: {fn}")
        elif (
            last == "read_pickle"
            or fn in ("torch.jit.load",)
            or (fn.startswith("mlflow.") and last == "load_model")
        ):
            found.append(f"{where}: {fn} (pickle-based model/frame loading)")
    return found


def test_scanner_detects_every_pattern():
    bad = """
import pickle
from joblib import load
import numpy as np, torch, yaml, mlflow, pandas as pd
pickle.loads(b"")
np.load("x.npy", allow_pickle=True)
torch.load("m.pt")
torch.load("m.pt", weights_only=False)
yaml.load(text, Loader=yaml.Loader)
yaml.load(text)
yaml.unsafe_load(text)
eval("1")
exec("x = 1")
pd.read_pickle("f")
mlflow.pyfunc.load_model("runs:/x")
"""
    assert len(unsafe_calls(bad)) == 13
    good = """
import numpy as np, torch, yaml
np.load("x.npy")
np.load("x.npy", allow_pickle=False, mmap_mode="r")
torch.load("m.pt", weights_only=True)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
"""
    assert unsafe_calls(good) == []


def test_package_has_no_code_executing_deserialisation():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    found = [hit for f in files for hit in unsafe_calls(f.read_text(), str(f.relative_to(REPO_ROOT)))]
    assert found == [], "\n".join(found)


class _Payload:
    """Unpickling this would create `marker` (stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_io_manager_refuses_a_planted_pickle(tmp_path: Path):
    marker = tmp_path / "pwned"
    base = storage.make_path(tmp_path / "store")
    planted = tmp_path / "store" / "document_embeddings" / "drop-0001.npy"
    planted.parent.mkdir(parents=True)
    np.save(planted, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ClimbInputError, match=r"drop-0001.npy: refusing to load a pickled object array"):
        read_value(base / "document_embeddings" / "drop-0001")
    assert not marker.exists()


def test_io_manager_refuses_pickle_in_a_materialization(tmp_path: Path):
    """Downstream of a planted object array, the run fails with the file named and nothing runs."""
    from climb_dagster_tests.reliability.helpers import failure_text, fit_centroids

    marker = tmp_path / "pwned"
    home = tmp_path / "climb"
    emb = home / "storage" / "document_embeddings"
    emb.mkdir(parents=True)
    for key in ("drop-0001", "drop-0002"):
        np.save(emb / f"{key}.npy", np.array([_Payload(marker)] * 3, dtype=object), allow_pickle=True)
    result = fit_centroids(home, n_clusters=2)
    assert not result.success
    assert "drop-0001.npy: refusing to load a pickled object array" in failure_text(result)
    assert not marker.exists()
    assert not (home / "storage" / "cluster_centroids.safetensors").exists()


def test_io_manager_never_writes_pickle(tmp_path: Path):
    from climb_dagster.resources.io_manager import write_value

    base = storage.make_path(tmp_path)
    with pytest.raises(TypeError, match="object arrays would need pickle"):
        write_value(base / "x", np.array([object()], dtype=object))
    with pytest.raises(TypeError, match="no pickle"):
        write_value(base / "y", {1, 2})
    assert not any(tmp_path.iterdir())
    assert pickle.dumps(1)  # (pickle itself is only used by this test module)


# ----------------------------------------------------------------------------------- credentials


def _canary_hits(texts) -> list[str]:
    return [t[:200] for t in texts if CANARY in t]


@pytest.mark.slow
def test_canary_credentials_never_reach_event_log_metadata_or_storage(clean_run: dict):
    """clean_run executed the whole experiment with canary AWS/MLflow/PostgreSQL secrets set."""
    from dagster._serdes import serialize_value

    instance = clean_run["instance"]
    texts = []
    for run in instance.get_runs():
        texts.append(serialize_value(run))
        texts.extend(serialize_value(record) for record in instance.all_logs(run.run_id))
    assert len(texts) > 100
    assert _canary_hits(texts) == []
    stored = [p.read_bytes() for p in Path(clean_run["root"]).rglob("*") if p.is_file()]
    assert stored and not any(CANARY.encode() in b for b in stored)
    # Sanity: the canary really was in the environment of that run.
    assert all(CANARY in v for v in CANARY_ENV.values())


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_canary_credentials_on_s3_run(s3_server, climb_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Against a real S3 endpoint (moto accepts any key): the secret key signs requests but never
    appears in the event log, asset metadata or stored objects."""
    from dagster._serdes import serialize_value

    from climb_dagster.assets.ingest import raw_documents
    from climb_dagster.deployments import build_resources
    from climb_dagster.partitions import crawl_drops
    from climb_dagster_tests.integration.drops import drop_parquet_bytes

    prefix = s3_server.unique_prefix("canary")
    s3_server.client().put_object(
        Bucket=s3_server.bucket,
        Key=f"{prefix}/landing/drop-0001.parquet",
        Body=drop_parquet_bytes("drop-0001"),
    )
    for key, value in CANARY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN")  # a session token would be sent to moto as is
    for key, value in {
        "CLIMB_DEPLOYMENT": "production",
        "CLIMB_STORAGE_URL": f"s3://{s3_server.bucket}/{prefix}/climb",
        "CLIMB_LANDING_URL": f"s3://{s3_server.bucket}/{prefix}/landing",
        "CLIMB_S3_ENDPOINT_URL": s3_server.url,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(key, value)
    resources = build_resources("production")
    # The resources carry no credentials of their own.
    assert CANARY not in serialize_value({k: repr(v) for k, v in resources.items()})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    result = dg.materialize(
        [raw_documents], partition_key="drop-0001", instance=instance, resources=resources
    )
    assert result.success
    texts = [serialize_value(r) for r in instance.all_logs(result.run_id)]
    texts.append(serialize_value(instance.get_run_by_id(result.run_id)))
    assert _canary_hits(texts) == []
    body = (
        s3_server.client()
        .get_object(Bucket=s3_server.bucket, Key=f"{prefix}/climb/raw_documents/drop-0001.parquet")["Body"]
        .read()
    )
    assert CANARY.encode() not in body


# ------------------------------------------------------------------------------ names and paths


BAD_KEYS = [
    "../evil",
    "..",
    "a/b",
    "/abs",
    "a b",
    "bad\x01key",
    "new\nline",
    "evil..x",
    ".hidden",
    "",
    "x" * 129,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_refused_by_the_io_manager_and_landing(tmp_path: Path, key: str):
    with pytest.raises(ClimbInputError, match="invalid"):
        validate_key(key)
    manager = ClimbIOManager(base_path=storage.make_path(tmp_path))
    with pytest.raises(ClimbInputError, match="invalid partition key"):
        manager.make_safe_partition_path(storage.make_path(tmp_path / "asset"), key)
    with pytest.raises(ClimbInputError, match="invalid crawl drop"):
        LandingZone(base=str(tmp_path)).path_for(key)


def test_new_drops_sensor_ignores_files_whose_names_are_not_safe_keys(tmp_path: Path):
    from climb_dagster.automation.clustering import new_drops_sensor

    landing = tmp_path / "landing"
    landing.mkdir()
    names = ["..evil.parquet", "a b.parquet", "evil..x.parquet", "x\x01y.jsonl", "tab\there.parquet",
             ".hidden.parquet", "ok-0001.parquet", "ok_0002.jsonl", "notes.txt"]  # fmt: skip
    for name in names:
        (landing / name).write_bytes(b"")
    zone = LandingZone(base=str(landing), settle_seconds=0)
    assert zone.list_drops() == ["ok-0001", "ok_0002"]
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources={"landing": zone})
    result = new_drops_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["ok-0001", "ok_0002"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["ok-0001", "ok_0002"]


def test_storage_paths_stay_under_the_base(tmp_path: Path):
    """Every valid key maps to one child of the asset folder."""
    manager = ClimbIOManager(base_path=storage.make_path(tmp_path))
    asset_dir = storage.make_path(tmp_path / "asset")
    for key in ("drop-0001", "a.b", "A_1", "x" * 128):
        path = manager.make_safe_partition_path(asset_dir, key)
        assert Path(path.path).parent == Path(asset_dir.path)


# --------------------------------------------------------------------------------------- infra


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, node


def test_helm_services_are_cluster_internal():
    """Compose port bindings are checked in test_infra.py; here: no service in the chart values is
    exposed outside the cluster (no LoadBalancer/NodePort, no enabled ingress)."""
    values = yaml.safe_load((REPO_ROOT / "infra" / "helm" / "values.yaml").read_text())
    types = {"/".join(p): v for p, v in _walk(values) if p and p[-1] == "type" and "service" in p}
    assert types and set(types.values()) == {"ClusterIP"}, types
    ingress = [
        p for p, v in _walk(values) if "ingress" in [x.lower() for x in p] and p[-1] == "enabled" and v
    ]
    assert ingress == []


def test_compose_binds_services_to_loopback_reused():
    """The compose check lives in test_infra.py; make sure it is still there (not duplicated here)."""
    text = (REPO_ROOT / "climb_dagster_tests" / "test_infra.py").read_text()
    assert "def test_compose_ports_bind_loopback_only" in text
    compose = yaml.safe_load((REPO_ROOT / "infra" / "compose.yaml").read_text())
    assert compose["services"], "compose.yaml parses"
    assert io  # (module import kept for readers of planted payloads)

"""System test: the WHOLE pipeline with the production resource set against real servers — storage and
landing on S3 (moto's server), tracking on a real `mlflow server` — compared with a local run of the same
inputs and seeds, and read back the way a user would from a notebook (boto3 + polars, MlflowClient).

One module fixture runs both pipelines (clustering with a tiny random BERT, proxy tokenizer and token store,
one 3-round experiment with 8 tiny proxies, final mixture and export) plus a second materialization of the
experiment's round 1 on S3 (proxy cache hits, MLflow runs found again, not duplicated); the tests only read.

Every computed value is compared for exact equality with the local run. What differs is named where it is
compared: paths under each storage root, wall-clock timings, and the proxy keys (they hash the target
spec, whose evaluator paths live under the storage root; see test_rounds_match_the_local_run_exactly).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from climb_dagster.core.common import schema
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.config import proxy_run_key
from climb_dagster.core.search import history as search_history
from climb_dagster.deployments import build_resources
from climb_dagster.resources.embedding import EmbeddingModelResource
from climb_dagster.resources.io_manager import read_value
from climb_dagster.resources.tracking import (
    EXPERIMENT,
    FINAL_OBSERVED,
    FINAL_PREDICTED,
    KIND,
    PARENT,
    PROXY,
    ROUND,
    TARGET_SCORE,
    MlflowTracker,
)
from climb_dagster_tests.integration.pipeline_driver import (
    EXPERIMENT_NAME,
    EXPERIMENT_SPEC,
    PIPELINE_DROPS,
    pipeline_inputs,
    run_bootstrapping,
    run_pipeline,
    write_local_landing,
)
from climb_dagster_tests.integration.servers import MlflowServer, S3Endpoint
from climb_dagster_tests.unit.embedding.test_encoder import make_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

EXP = EXPERIMENT_NAME
ROUNDS = (1, 2, 3)
# Columns of an evaluations table that depend on the machine or the storage location, not the computation:
# wall_s is a timing; cached is True in round 1 on S3, which was materialized a second time (see test_rerun_...).
RUN_SPECIFIC_EVAL_COLUMNS = ["wall_s", "cached"]


@dataclass
class Runs:
    s3: S3Endpoint
    prefix: str
    local_root: storage.UPath
    local_result: dg.ExecuteInProcessResult
    s3_result: dg.ExecuteInProcessResult
    s3_rerun: dg.ExecuteInProcessResult
    mlflow_url: str
    s3_experiment: str
    local_experiment: str
    s3_cache: Path
    tmp: Path

    @property
    def climb_prefix(self) -> str:
        return f"{self.prefix}/climb"

    def get(self, key: str) -> bytes:
        """An object under the S3 run's storage root, read with plain boto3."""
        body = self.s3.client().get_object(Bucket=self.s3.bucket, Key=f"{self.climb_prefix}/{key}")["Body"]
        return body.read()

    def parquet(self, key: str) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(self.get(key)))

    def json(self, key: str):
        return json.loads(self.get(key))

    def keys(self, under: str = "") -> list[str]:
        client = self.s3.client()
        paginator = client.get_paginator("list_objects_v2")
        out = []
        for page in paginator.paginate(Bucket=self.s3.bucket, Prefix=f"{self.climb_prefix}/{under}"):
            out.extend(o["Key"].removeprefix(f"{self.climb_prefix}/") for o in page.get("Contents", []))
        return sorted(out)

    def local(self, key: str):
        return read_value(self.local_root / key)

    def remote(self, key: str):
        """The value stored on S3 at `key` (no suffix), read back as the IO manager reads it (typed)."""
        options = storage.s3_storage_options(self.s3.url, self.s3.region)
        return read_value(storage.make_path(f"s3://{self.s3.bucket}/{self.climb_prefix}/{key}", options))


def _tracker(url: str, experiment: str) -> MlflowTracker:
    return MlflowTracker(tracking_uri=url, experiment_name=experiment, max_attempts=2, backoff_s=0.2)


@pytest.fixture(scope="module")
def runs(
    s3_server: S3Endpoint, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Runs:
    tmp = tmp_path_factory.mktemp("pipeline")
    tiny = EmbeddingModelResource(
        model_path=str(make_tiny_model(tmp / "tiny-bert")), precision="fp32", progress_interval_s=0
    )
    drops, target = pipeline_inputs()
    prefix = s3_server.unique_prefix("pipeline")
    client = s3_server.client()
    for key, data in drops.items():
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/landing/{key}.parquet", Body=data)
    # The target lives on S3 too (step pods cannot see a laptop's disk); both runs read the same URL, so
    # their experiment records (and config hashes) are identical.
    client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/inputs/target.parquet", Body=target)
    target_url = f"s3://{s3_server.bucket}/{prefix}/inputs/target.parquet"
    suffix = uuid.uuid4().hex[:8]
    s3_experiment, local_experiment = f"climb-s3-{suffix}", f"climb-local-{suffix}"

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DAGSTER_HOME", raising=False)
        # The local default home: the production run must leave it untouched (no storage, no mlflow.db).
        mp.setenv("CLIMB_HOME", str(tmp / "unused-home"))
        # S3 run: production resources from the environment, as a run worker pod would build them.
        mp.setenv("CLIMB_DEPLOYMENT", "production")
        mp.setenv("CLIMB_STORAGE_URL", f"s3://{s3_server.bucket}/{prefix}/climb")
        mp.setenv("CLIMB_LANDING_URL", f"s3://{s3_server.bucket}/{prefix}/landing")
        mp.setenv("CLIMB_S3_ENDPOINT_URL", s3_server.url)
        mp.setenv("CLIMB_S3_REGION", s3_server.region)
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        s3_cache = tmp / "s3-cache"
        mp.setenv("CLIMB_CACHE_DIR", str(s3_cache))
        resources = build_resources("production")
        assert resources["tracker"].tracking_uri == mlflow_server.url
        assert resources["storage"].s3_endpoint_url == s3_server.url
        # A fresh experiment name per session: the server is shared with other tests.
        resources |= {"embedder": tiny, "tracker": _tracker(mlflow_server.url, s3_experiment)}
        s3_instance = dg.DagsterInstance.ephemeral()
        s3_result = run_pipeline(resources, s3_instance, target_url)
        # The experiment and its round 1 again: every proxy comes from the proxy cache on S3, and the
        # MLflow runs are found again instead of duplicated.
        s3_rerun = run_bootstrapping(
            resources, s3_instance, target_url, proxy_data=False, groups=["experiments", "round_1"]
        )

        # Local run: same inputs and seeds, storage and landing on local disk (the target stays on S3).
        home = tmp / "home"
        mp.setenv("CLIMB_HOME", str(home))
        mp.setenv("CLIMB_CACHE_DIR", str(tmp / "local-cache"))
        for name in ("CLIMB_DEPLOYMENT", "CLIMB_STORAGE_URL", "CLIMB_LANDING_URL"):
            mp.delenv(name)
        write_local_landing(home / "landing", drops)
        local = build_resources("local")
        assert local["storage"].base_path == str(home / "storage")
        local |= {"embedder": tiny, "tracker": _tracker(mlflow_server.url, local_experiment)}
        local_result = run_pipeline(local, dg.DagsterInstance.ephemeral(), target_url)

    return Runs(
        s3=s3_server,
        prefix=prefix,
        local_root=storage.make_path(home / "storage"),
        local_result=local_result,
        s3_result=s3_result,
        s3_rerun=s3_rerun,
        mlflow_url=mlflow_server.url,
        s3_experiment=s3_experiment,
        local_experiment=local_experiment,
        s3_cache=s3_cache,
        tmp=tmp,
    )


# --------------------------------------------------------------------------------------------- storage


def test_everything_is_stored_on_s3_and_nothing_locally(runs: Runs):
    keys = runs.keys()
    for drop in PIPELINE_DROPS:
        for asset, ext in [
            ("raw_documents", "parquet"),
            ("document_embeddings", "npy"),
            ("document_quality", "parquet"),
            ("cluster_assignments", "parquet"),
            ("cluster_profiles", "parquet"),
        ]:
            assert f"{asset}/{drop}.{ext}" in keys, asset
    for name in ("super_clusters.parquet", "super_cluster_stats.parquet", f"experiment/{EXP}.json"):
        assert name in keys
    for k in ROUNDS:
        for asset in ("mixtures", "proxy_evaluations"):
            assert f"round_{k}_{asset}/{EXP}.parquet" in keys
        assert f"round_{k}_predictor/{EXP}.model.txt" in keys
    assert f"final_mixture/{EXP}.json" in keys
    assert f"exports/{EXP}/manifest.json" in keys
    assert any(k.startswith("proxy_runs/") and k.endswith("/result.json") for k in keys)
    assert any(k.startswith("proxy_runs/") and "/model/" in k for k in keys)
    assert any(k.startswith("cluster_tokens/") and k.endswith("/index.json") for k in keys)
    assert f"targets/{EXP}/heldout_windows.npy" in keys
    # All-or-nothing writes leave no temporary objects behind.
    assert not [k for k in keys if ".tmp-" in k]
    # And the production run wrote nothing under the local default home.
    assert not (runs.tmp / "unused-home").exists()


def test_clustering_matches_the_local_run(runs: Runs):
    for drop in PIPELINE_DROPS:
        assert_frame_equal(runs.parquet(f"raw_documents/{drop}.parquet"), runs.local(f"raw_documents/{drop}"))
        remote = np.load(io.BytesIO(runs.get(f"document_embeddings/{drop}.npy")), allow_pickle=False)
        np.testing.assert_array_equal(remote, np.asarray(runs.local(f"document_embeddings/{drop}")))
        assert_frame_equal(
            runs.parquet(f"cluster_assignments/{drop}.parquet"), runs.local(f"cluster_assignments/{drop}")
        )
    from safetensors.numpy import load

    remote_centroids = load(runs.get("cluster_centroids.safetensors"))
    local_centroids = runs.local("cluster_centroids").tensors
    assert sorted(remote_centroids) == sorted(local_centroids)
    for name, array in remote_centroids.items():
        np.testing.assert_array_equal(array, local_centroids[name])
    mapping = runs.parquet("super_clusters.parquet")
    assert mapping.columns == ["cluster", "super_cluster"]
    assert mapping["super_cluster"].n_unique() == 3
    assert_frame_equal(mapping, runs.local("super_clusters"))
    assert_frame_equal(runs.parquet("super_cluster_stats.parquet"), runs.local("super_cluster_stats"))


def test_proxy_data_matches_and_reads_through_the_local_cache(runs: Runs):
    local_tokens = runs.local("cluster_tokens")
    remote_tokens = runs.remote("cluster_tokens")
    assert runs.json("cluster_tokens.json")["record_type"] == "TokenStoreRef"
    assert remote_tokens.key == local_tokens.key, "the token store's content hash differs"
    assert remote_tokens.tokens == local_tokens.tokens
    assert remote_tokens.documents == local_tokens.documents
    assert (
        remote_tokens.path == f"s3://{runs.s3.bucket}/{runs.climb_prefix}/cluster_tokens/{local_tokens.key}"
    )
    assert runs.json("proxy_tokenizer.json")["sha256"] == runs.local("proxy_tokenizer").sha256

    # The token index, the drops' token folders it names and the tokenizer were read through local copies
    # (core/io/storage.py local_dir_copy), and the target windows through local_copy: each cached copy has the
    # bytes of its S3 object.
    cached_dirs = [p for p in runs.s3_cache.glob("dir-*") if (p / ".complete").exists()]
    assert len(cached_dirs) == 2 + len(PIPELINE_DROPS), sorted(p.name for p in runs.s3_cache.iterdir())
    assert not list(runs.s3_cache.glob("*.tmp-*")), "an interrupted download was left in the cache"
    store_prefix = f"cluster_tokens/{local_tokens.key}/"
    remote_files = [k.removeprefix(store_prefix) for k in runs.keys(store_prefix)]
    store_dir = next(p for p in cached_dirs if (p / "segments_000.npy").exists())
    local_files = sorted(
        p.relative_to(store_dir).as_posix()
        for p in store_dir.rglob("*")
        if p.is_file() and p.name != ".complete"
    )
    assert local_files == remote_files
    for name in remote_files:
        assert (store_dir / name).read_bytes() == runs.get(store_prefix + name), name
    windows = [p for p in runs.s3_cache.iterdir() if p.name.endswith("-heldout_windows.npy")]
    assert len(windows) == 1
    assert windows[0].read_bytes() == runs.get(f"targets/{EXP}/heldout_windows.npy")


def test_proxy_checkpoints_on_s3_load_through_the_local_cache(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A proxy checkpoint stored on S3 fetched with local_dir_copy (as a later analysis would) loads, and
    holds the same weights as the local run's checkpoint of the same mixture."""
    from safetensors.numpy import load_file

    from climb_dagster.core.proxy.model import load_model

    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    remote_key = _evals_remote(runs, 1)["proxy_key"][0]
    local_key = runs.local(f"round_1_proxy_evaluations/{EXP}")["proxy_key"][0]
    remote = storage.make_path(
        f"s3://{runs.s3.bucket}/{runs.climb_prefix}/proxy_runs/{remote_key}/model",
        storage.s3_storage_options(runs.s3.url, runs.s3.region),
    )
    fetched = storage.local_dir_copy(remote, kind="checkpoint")
    stamps = {p: p.stat().st_mtime_ns for p in fetched.rglob("*")}

    def no_download(*args, **kwargs):
        raise AssertionError(f"fetched again: {args}")

    # The second call is a cache hit: it downloads nothing and leaves the cached files untouched.
    with monkeypatch.context() as patched:
        patched.setattr(type(remote.fs), "get", no_download)
        patched.setattr(type(remote.fs), "get_file", no_download)
        assert storage.local_dir_copy(remote, kind="checkpoint") == fetched
    assert {p: p.stat().st_mtime_ns for p in fetched.rglob("*")} == stamps
    local_dir = Path(runs.local_root.path) / "proxy_runs" / local_key / "model"
    names = sorted(p.name for p in fetched.iterdir() if p.name != ".complete")
    assert names == sorted(p.name for p in local_dir.iterdir())
    remote_weights, local_weights = (load_file(d / "model.safetensors") for d in (fetched, local_dir))
    assert sorted(remote_weights) == sorted(local_weights)
    for name, array in remote_weights.items():
        np.testing.assert_array_equal(array, local_weights[name], err_msg=name)
    model = load_model(fetched)
    assert sum(p.numel() for p in model.parameters()) > 0
    run = json.loads((fetched / "proxy_run.json").read_text())
    assert run["status"] == "ok" and run["steps"] == EXPERIMENT_SPEC["proxy_steps"]


def _evals_remote(runs: Runs, k: int) -> pl.DataFrame:
    return runs.parquet(f"round_{k}_proxy_evaluations/{EXP}.parquet")


def test_rounds_match_the_local_run_exactly(runs: Runs):
    remote_record = runs.remote(f"experiment/{EXP}")
    local_record = runs.local(f"experiment/{EXP}")
    assert remote_record.config_hash == local_record.config_hash
    assert remote_record.target_spec["fingerprint"] == local_record.target_spec["fingerprint"]
    assert remote_record.token_store == local_record.token_store
    # The records differ only where they name the storage root: the token store and evaluator paths.
    remote_spec, local_spec = remote_record.target_spec, local_record.target_spec
    assert remote_spec["evaluators"][0]["path"] == (
        f"s3://{runs.s3.bucket}/{runs.climb_prefix}/targets/{EXP}/heldout_windows.npy"
    )
    relocated = dataclasses.replace(
        remote_record,
        token_store_path=local_record.token_store_path,
        target_spec={
            **remote_spec,
            "evaluators": [
                {**e, "path": local_e["path"]}
                for e, local_e in zip(remote_spec["evaluators"], local_spec["evaluators"], strict=True)
            ],
        },
    )
    assert relocated == local_record
    for k in ROUNDS:
        remote_mix = runs.parquet(f"round_{k}_mixtures/{EXP}.parquet")
        local_mix = runs.local(f"round_{k}_mixtures/{EXP}")
        assert remote_mix.height == EXPERIMENT_SPEC["rounds"][k - 1]
        # proxy_key = hash(mixture, proxy config, seed, data_key(record)); data_key takes the target by
        # content, not by location, so the S3 run and the local run key (and could share) the same proxies.
        assert_frame_equal(remote_mix, local_mix)
        weights = search_history.table_mixtures(remote_mix)
        proxy, seed = remote_record.proxy, remote_record.seed
        assert [proxy_run_key(w.tolist(), proxy, seed, remote_record.data_key()) for w in weights] == (
            remote_mix["proxy_key"].to_list()
        )
        assert [proxy_run_key(w.tolist(), proxy, seed, relocated.data_key()) for w in weights] == (
            local_mix["proxy_key"].to_list()
        )

        remote_eval, local_eval = _evals_remote(runs, k), runs.local(f"round_{k}_proxy_evaluations/{EXP}")
        assert (remote_eval["status"] == "ok").all() and not local_eval["cached"].any()
        assert remote_eval["proxy_key"].to_list() == remote_mix["proxy_key"].to_list()
        # Same mixtures, same seed, same tokens, one thread: bit-identical proxy training and scores.
        assert_frame_equal(
            remote_eval.drop(RUN_SPECIFIC_EVAL_COLUMNS), local_eval.drop(RUN_SPECIFIC_EVAL_COLUMNS)
        )

        model = read_value(
            storage.make_path(
                f"s3://{runs.s3.bucket}/{runs.climb_prefix}/round_{k}_predictor/{EXP}",
                storage.s3_storage_options(runs.s3.url, runs.s3.region),
            )
        )
        local_model = runs.local(f"round_{k}_predictor/{EXP}")
        assert runs.get(f"round_{k}_predictor/{EXP}.model.txt").decode() == model.texts[0]
        assert model.texts == local_model.texts
        assert model.metadata == local_model.metadata


def test_final_mixture_and_export_match_the_local_run(runs: Runs):
    final = runs.remote(f"final_mixture/{EXP}")
    local_final = runs.local(f"final_mixture/{EXP}")
    assert final == local_final
    w = np.asarray(final.weights)
    assert w.shape == (3,) and abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
    assert final.proxies_trained == final.proxies_successful == 8
    scores = pl.concat([_evals_remote(runs, k) for k in ROUNDS])["score"]
    assert final.best_observed_score == scores.min()

    manifest = runs.json(f"exports/{EXP}/manifest.json")
    local_manifest = json.loads((Path(runs.local_root.path) / "exports" / EXP / "manifest.json").read_text())
    assert manifest["final_mixture"] == final.to_dict()
    # The blend's data prefixes name each run's own token store location; everything else is equal.
    remote_prefix = f"s3://{runs.s3.bucket}/{runs.climb_prefix}/"
    local_prefix = runs.local_root.path.rstrip("/") + "/"
    blend_text = json.dumps(manifest["blend"]).replace(remote_prefix, "<root>/")
    assert json.loads(blend_text) == json.loads(
        json.dumps(local_manifest["blend"]).replace(local_prefix, "<root>/")
    )

    # Each export is its own version (a new folder per materialization); the files in it are equal.
    def unversioned(m: dict) -> str:
        text = json.dumps({k: v for k, v in m.items() if k not in ("blend", "version")})
        return text.replace(m["version_path"], "<version>")

    assert unversioned(manifest) == unversioned(local_manifest)
    assert manifest["shards"] and manifest["tokens_sampled"] > 0
    for shard, local_shard in zip(manifest["shards"], local_manifest["shards"], strict=True):
        remote = runs.parquet(f"exports/{EXP}/{shard['file']}")
        assert remote.height == shard["rows"]
        assert_frame_equal(
            remote, pl.read_parquet(Path(runs.local_root.path) / "exports" / EXP / local_shard["file"])
        )
    assert runs.json(f"exports/{EXP}/{manifest['version_path']}/blend.json") == manifest["blend"]


def test_rerun_on_s3_reuses_every_proxy_from_the_s3_cache(runs: Runs):
    def meta(result, asset):
        return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}

    first, again = (meta(r, "round_1_proxy_evaluations") for r in (runs.s3_result, runs.s3_rerun))
    assert first["reused_from_cache"] == 0
    assert again["reused_from_cache"] == again["dagster/row_count"] == EXPERIMENT_SPEC["rounds"][0]
    evals = _evals_remote(runs, 1)  # the rerun's table: cached rows carry the first run's records
    assert evals["cached"].all()
    assert not _evals_remote(runs, 2)["cached"].any()
    assert_frame_equal(
        evals.drop(RUN_SPECIFIC_EVAL_COLUMNS),
        runs.local(f"round_1_proxy_evaluations/{EXP}").drop(RUN_SPECIFIC_EVAL_COLUMNS),
    )
    # The refitted predictor is the same model.
    assert (
        runs.get(f"round_1_predictor/{EXP}.model.txt").decode()
        == runs.local(f"round_1_predictor/{EXP}").texts[0]
    )
    # One result.json per proxy: nothing was trained (or stored) twice.
    results = [k for k in runs.keys("proxy_runs/") if k.endswith("/result.json")]
    assert len(results) == 8


# ---------------------------------------------------------------------------------------------- MLflow


def _search(client, exp_id: str, kind: str, order_by=None):
    return client.search_runs([exp_id], filter_string=f"tags.`{KIND}` = '{kind}'", order_by=order_by)


def test_mlflow_server_holds_the_experiment_round_proxy_tree(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mlflow
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    from climb_dagster.core.search.rounds import load_predictor

    client = MlflowClient(tracking_uri=runs.mlflow_url)
    exp_id = client.get_experiment_by_name(runs.s3_experiment).experiment_id

    parents = _search(client, exp_id, "experiment")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags[EXPERIMENT] == EXP and PARENT not in parent.data.tags
    assert parent.info.status == "FINISHED"
    assert parent.data.params["strategy"] == "climb" and parent.data.params["rounds"] == "4:2:2"
    assert parent.data.params["seed"] == str(EXPERIMENT_SPEC["seed"])

    # The fluent API a notebook would use, filtering by the tag the UI shows. Through the environment:
    # mlflow.set_tracking_uri(None) would also drop the session's MLFLOW_TRACKING_URI (conftest.py).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", runs.mlflow_url)
    frame = mlflow.search_runs(
        experiment_ids=[exp_id],
        filter_string=f"tags.`{KIND}` = 'round'",
        order_by=["tags.`climb.round` ASC"],
    )
    assert frame["tags.climb.round"].tolist() == ["1", "2", "3"]
    assert set(frame[f"tags.{PARENT}"]) == {parent.info.run_id}

    rounds = {r.data.tags[ROUND]: r for r in _search(client, exp_id, "round")}
    assert sorted(rounds) == ["1", "2", "3"]
    proxies = _search(client, exp_id, "proxy")
    assert len(proxies) == 8
    for k in ROUNDS:
        run = rounds[str(k)]
        assert run.data.tags[PARENT] == parent.info.run_id and run.info.status == "FINISHED"
        model = runs.local(f"round_{k}_predictor/{EXP}")  # equal to the S3 one (test above)
        for metric in ("best_observed_score", "predicted_best", "n_successful", "n_spent"):
            assert run.data.metrics[metric] == pytest.approx(model.metadata[metric], rel=1e-12), metric
        if model.metadata["cv_spearman"] is not None:
            assert run.data.metrics["cv_spearman"] == pytest.approx(model.metadata["cv_spearman"], rel=1e-12)
        assert k != 1 or "cv_spearman" in run.data.metrics, "round 1 has 4 proxies: cross-validated"
        assert run.data.params["n_proxies"] == str(EXPERIMENT_SPEC["rounds"][k - 1])

        evals = _evals_remote(runs, k)
        mine = [p for p in proxies if p.data.tags[ROUND] == str(k)]
        assert {p.data.tags[PROXY] for p in mine} == set(evals["proxy_key"])
        score_of = dict(zip(evals["proxy_key"], evals["score"], strict=True))
        for p in mine:
            assert p.data.tags[PARENT] == run.info.run_id and p.info.status == "FINISHED"
            assert p.data.metrics[TARGET_SCORE] == score_of[p.data.tags[PROXY]]
            assert p.data.tags["status"] == "ok"

        # The predictor is one MLflow logged model (the whole ensemble) that predicts as the stored one does.
        # The round's evaluated weights (as replay logs them), and the plots the asset pages show, named by
        # their content (a later plot never replaces one a materialization links to).
        plots = sorted(a.path.rsplit("-", 1)[0] for a in client.list_artifacts(run.info.run_id, "plots"))
        assert plots == ["plots/predicted_vs_observed", f"plots/round_{k}_weights.png", "plots/weights_plot"]
        (output,) = client.get_run(run.info.run_id).outputs.model_outputs
        loaded = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
        x = evals.select(schema.weight_columns_of(evals.columns)).to_numpy()
        np.testing.assert_allclose(
            loaded.predict(evals.to_pandas()), load_predictor(model).predict(x), rtol=0, atol=1e-9
        )

    best = _search(client, exp_id, "proxy", order_by=[f"metrics.{TARGET_SCORE} ASC"])[0]
    final = runs.remote(f"final_mixture/{EXP}")
    assert best.data.metrics[TARGET_SCORE] == final.best_observed_score
    assert parent.data.metrics[FINAL_PREDICTED] == final.predicted_score
    assert parent.data.metrics[FINAL_OBSERVED] == final.best_observed_score
    path = download_artifacts(
        run_id=parent.info.run_id,
        artifact_path="final_mixture.json",
        dst_path=str(tmp_path / "final"),
        tracking_uri=runs.mlflow_url,
    )
    assert json.loads(Path(path).read_text()) == final.to_dict()


def test_local_run_logged_the_same_metrics(runs: Runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs.mlflow_url)

    def metrics(experiment: str) -> dict:
        exp_id = client.get_experiment_by_name(experiment).experiment_id
        out = {}
        for kind in ("experiment", "round", "proxy"):
            for r in _search(client, exp_id, kind):
                key = (kind, r.data.tags.get(ROUND), r.data.params.get("mixture_id"))
                out[key] = {m: v for m, v in r.data.metrics.items() if m not in ("wall_s",)}
        return out

    assert metrics(runs.s3_experiment) == metrics(runs.local_experiment)
    assert os.environ.get("CLIMB_DEPLOYMENT") != "production", "the fixture restored the environment"

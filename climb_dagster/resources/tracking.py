"""MLflow tracking through `MlflowClient` with explicit run ids (no fluent global state, safe across pods).

Every call is idempotent: runs are found by tags before they are created and params are written once, so a
re-executed step or a later replay from stored assets (see climb_dagster.replay) never duplicates the tree
experiment -> round -> proxy.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from climb_dagster.core.redact import redact, redact_value

log = logging.getLogger(__name__)
T = TypeVar("T")

KIND = "climb.kind"  # experiment | round | proxy
EXPERIMENT = "climb.experiment"
ROUND = "climb.round"
PROXY = "climb.proxy"
PARENT = "mlflow.parentRunId"


_SQLITE_READY: set[str] = set()


def _set_up_sqlite_store(uri: str) -> None:
    """Create (migrate) a local sqlite MLflow store under an exclusive file lock, once per process.

    MLflow migrates a fresh sqlite store on first use; two processes doing it at once (two demos on a fresh
    home) leave it half-migrated and unusable ("table _alembic_tmp_metrics already exists").
    """
    if not uri.startswith("sqlite:///") or uri in _SQLITE_READY:
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    db = uri.removeprefix("sqlite:///")
    os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    with open(db + ".setup-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    _SQLITE_READY.add(uri)


class TrackingUnavailable(RuntimeError):
    """MLflow did not answer after the configured retries; results are stored and can be replayed."""


class MlflowTracker(dg.ConfigurableResource):
    """Small interface over `MlflowClient`: find-or-create runs by tags, log params/metrics/artifacts."""

    tracking_uri: str
    experiment_name: str = "climb"
    max_attempts: int = 4
    backoff_s: float = 0.5
    # HTTP requests to a tracking server: fail fast instead of MLflow's default minutes of retries.
    http_timeout_s: int = 10

    def _client(self):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_s))
        from mlflow.tracking import MlflowClient

        _set_up_sqlite_store(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri)

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        last: Exception | None = None
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except Exception as exc:  # MLflow raises MlflowException, requests errors, sqlalchemy errors...
                last = exc
                log.warning(
                    "MLflow %s failed (attempt %d/%d): %s", what, attempt + 1, self.max_attempts, redact(exc)
                )
                time.sleep(self.backoff_s * (2**attempt))
        # Chained exceptions are dropped (`from None`): MLflow's own error texts repeat the URI unredacted.
        raise TrackingUnavailable(
            redact(f"MLflow at {self.tracking_uri!r} unavailable for {what}: {type(last).__name__}: {last}")
        ) from None

    def experiment_id(self) -> str:
        def get_or_create() -> str:
            client = self._client()
            exp = client.get_experiment_by_name(self.experiment_name)
            if exp is not None:
                return exp.experiment_id
            return client.create_experiment(self.experiment_name)

        return self._retry("get experiment", get_or_create)

    def ensure_run(self, kind: str, tags: dict[str, str], name: str, parent_run_id: str | None = None) -> str:
        """The run with these tags (created when absent). Returns its run id."""
        exp_id = self.experiment_id()
        all_tags = redact_value({KIND: kind, **tags})
        if parent_run_id:
            all_tags[PARENT] = parent_run_id
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in all_tags.items())

        def find_or_create() -> str:
            client = self._client()
            found = client.search_runs([exp_id], filter_string=query, max_results=1)
            if found:
                return found[0].info.run_id
            return client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id

        return self._retry(f"ensure {kind} run {name}", find_or_create)

    def log(
        self, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None
    ) -> None:
        from mlflow.entities import Metric, Param

        def write() -> None:
            client = self._client()
            existing = client.get_run(run_id).data.params
            new_params = [Param(k, redact(v)) for k, v in (params or {}).items() if k not in existing]
            now = int(time.time() * 1000)
            ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
            client.log_batch(run_id, metrics=ms, params=new_params)

        self._retry(f"log to run {run_id}", write)

    def log_artifact_bytes(
        self, run_id: str, name: str, data: bytes, artifact_path: str | None = None
    ) -> None:
        def write() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, name)
                with open(path, "wb") as f:
                    f.write(data)
                self._client().log_artifact(run_id, path, artifact_path)

        self._retry(f"artifact {name}", write)

    def log_lightgbm(self, run_id: str, model_text: str, artifact_path: str = "predictor") -> None:
        """Log a LightGBM booster with `mlflow.lightgbm` (Booster -> native text format, no pickle)."""

        def write() -> None:
            import lightgbm
            import mlflow.lightgbm

            booster = lightgbm.Booster(model_str=model_text)
            with tempfile.TemporaryDirectory() as tmp:
                target = os.path.join(tmp, "model")
                # Explicit requirements: MLflow would otherwise infer them in a subprocess (seconds per call).
                mlflow.lightgbm.save_model(
                    booster, target, pip_requirements=[f"lightgbm=={lightgbm.__version__}"]
                )
                self._client().log_artifacts(run_id, target, artifact_path)

        self._retry("log LightGBM predictor", write)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self._retry(f"finish run {run_id}", lambda: self._client().set_terminated(run_id, status))

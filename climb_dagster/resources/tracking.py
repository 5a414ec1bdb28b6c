"""MLflow tracking through `MlflowClient` with explicit run ids (no fluent global state, safe across pods).

Every call is idempotent: runs are found by tags before they are created and params are written once, so a
re-executed step or a later replay from stored assets (see climb_dagster.replay) never duplicates the tree
experiment -> round -> proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import dagster as dg
from pydantic import Field

import climb_dagster
from climb_dagster.core.common.code_version import code_version
from climb_dagster.core.io.redact import redact, redact_value

log = logging.getLogger(__name__)
T = TypeVar("T")

KIND = "climb.kind"  # experiment | round | proxy
EXPERIMENT = "climb.experiment"
ROUND = "climb.round"
PROXY = "climb.proxy"
PARENT = "mlflow.parentRunId"
CONFIG_HASH = "climb.config_hash"
PROXY_DEVICE = "climb.proxy_device"  # where an experiment's proxies train (cpu, cuda)
DIRECTION = "climb.direction"  # minimize or maximize: how to read target_score
STRATEGY = "climb.strategy"
CODE_VERSION = "climb.code_version"
GIT_COMMIT = "mlflow.source.git.commit"
NOTE = "mlflow.note.content"  # the description MLflow's UI shows on an experiment or run
# MLflow 3's UI opens an experiment in its GenAI view (traces, evaluations, "agent versions") unless the
# experiment says it holds model training runs: this tag (value as the UI's own experiment-kind selector sets it).
EXPERIMENT_KIND = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# MLflow 3.17's UI ignores the experiment's kind tag and opens every experiment in its GenAI view (a browser-wide
# setting, GenAI by default) unless the address names the view: every link this project writes names it.
TRAINING_VIEW = "workflowType=machine_learning"
# The metric names every run uses (README "MLflow"): the target's score is `target_score` wherever it appears.
TARGET_SCORE = "target_score"  # a proxy's score on the experiment's target (validation split)
TRAIN_LOSS = "train_loss"  # a proxy's training loss per step (the runs table shows the last)
BEST_TARGET_SCORE = "best_target_score"  # parent and round runs: the best proxy score so far, per round
OOF_SPEARMAN = "oof_spearman"  # the round predictor's out-of-fold Spearman
FINAL_PREDICTED = "final_predicted_target_score"  # the final mixture's predicted score
FINAL_OBSERVED = "final_best_observed_target_score"  # the best proxy score of the whole search
FINAL_TEST = "final_test_target_score"  # the final mixture retrained and scored on the test split (--compare)
DESCRIPTION = (
    "CLIMB data-mixture search (climb-dagster). One parent run per experiment and strategy (params: its "
    f"config; metrics: {BEST_TARGET_SCORE} and {OOF_SPEARMAN} per round, then {FINAL_PREDICTED}, "
    f"{FINAL_OBSERVED} and, when scored, {FINAL_TEST}), one child run per round (the predictor as a logged "
    f"model, plots, evaluations) and one grandchild per proxy LM (its mixture, {TARGET_SCORE} on the target, "
    f"{TRAIN_LOSS} per step, real training times). Whether lower is better: the runs' climb.direction tag."
)
# Where `make ui` serves MLflow for a local store (links in Dagster metadata point there).
LOCAL_UI_URL = "http://127.0.0.1:5000"
# The predictor's MLflow model code (run by MLflow at load time, so never imported here) and its artifact key.
PREDICTOR_CODE = Path(__file__).parents[1] / "tracking" / "predictor_model.py"
PREDICTOR_ARTIFACT = "predictor"
# What the predictor imports from this package (the import closure of core.search.predictor; a test keeps the
# two equal): copied into the logged model, so loading it needs mlflow, lightgbm, numpy and scipy, not us.
PREDICTOR_PACKAGE_FILES = (
    "__init__.py",
    "core/__init__.py",
    "core/common/__init__.py",
    "core/common/direction.py",
    "core/common/errors.py",
    "core/search/__init__.py",
    "core/search/gp.py",
    "core/search/predictor.py",
)
MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call


_SQLITE_READY: set[str] = set()


@contextlib.contextmanager
def _mlflow_switch(variable: Any, value: str) -> Iterator[None]:
    """One of MLflow's environment switches (`mlflow.environment_variables`) set for the block, then restored."""
    before = variable.get_raw()
    variable.set(value)
    try:
        yield
    finally:
        if before is None:
            variable.unset()
        else:
            variable.set(before)


def predictor_package(folder: Path) -> Path:
    """`folder/climb_dagster` holding only PREDICTOR_PACKAGE_FILES, for the logged model's `code_paths`."""

    source = Path(climb_dagster.__file__).parent
    target = folder / "climb_dagster"
    for name in PREDICTOR_PACKAGE_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes((source / name).read_bytes())
    return target


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


def is_local_store(uri: str) -> bool:
    """A store MLflow reads from disk (sqlite file or file store), which keeps artifacts where told."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


class MlflowTracker(dg.ConfigurableResource):
    """Small interface over `MlflowClient`: find-or-create runs by tags, log params/metrics/artifacts."""

    tracking_uri: str = Field(
        description="MLflow tracking URI: a server (http://...) or a local sqlite store."
    )
    experiment_name: str = Field(default="climb", description="MLflow experiment the runs go to.")
    # Without it MLflow would use ./mlruns of whatever directory the process started in.
    artifact_root: str | None = Field(
        default=None,
        description="Where a local store's experiment keeps its artifacts (local deployment: "
        "$CLIMB_HOME/mlflow-artifacts); a tracking server decides for itself (ignored there).",
    )
    ui_url: str | None = Field(
        default=None,
        description="Base of links to runs and models in Dagster metadata (default: the server itself, or "
        "`make ui`'s).",
    )
    max_attempts: int = Field(default=4, description="Attempts per MLflow call before giving up.")
    backoff_s: float = Field(default=0.5, description="First retry delay in seconds (doubles per attempt).")
    http_timeout_s: int = Field(
        default=10,
        description="HTTP timeout per request to a tracking server: fail fast instead of MLflow's minutes.",
    )

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

    def artifact_location(self) -> str | None:
        """The artifact location a new experiment gets: a file URI under `artifact_root` for a local store."""
        if not self.artifact_root or not is_local_store(self.tracking_uri):
            return None
        return (Path(self.artifact_root).resolve() / self.experiment_name).as_uri()

    def experiment_id(self) -> str:
        """The experiment (created with its description and artifact location when absent)."""

        def get_or_create() -> str:
            client = self._client()
            exp = client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                return client.create_experiment(
                    self.experiment_name,
                    artifact_location=self.artifact_location(),
                    tags={NOTE: DESCRIPTION, EXPERIMENT_KIND: TRAINING_KIND},
                )
            if NOTE not in exp.tags:
                client.set_experiment_tag(exp.experiment_id, NOTE, DESCRIPTION)
            if EXPERIMENT_KIND not in exp.tags:  # created before the tag was set, or by hand
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
            wanted = self.artifact_location()
            if wanted and not exp.artifact_location.startswith(wanted):
                log.warning(
                    "MLflow experiment %r keeps its artifacts at %s, not under %s: it was created before; "
                    "use a new experiment name to keep them under CLIMB_HOME",
                    self.experiment_name,
                    redact(exp.artifact_location),
                    wanted,
                )
            return exp.experiment_id

        return self._retry("get experiment", get_or_create)

    def ensure_run(
        self,
        kind: str,
        tags: dict[str, str],
        name: str,
        parent_run_id: str | None = None,
        start_time_s: float | None = None,
        extra_tags: dict[str, str] | None = None,
    ) -> str:
        """The run with these tags (created when absent). Returns its run id.

        A new run starts at `start_time_s` (epoch seconds; default now) and also carries `extra_tags` and
        the code version; those are not part of the lookup, so new code or a new start finds the same run.
        """
        exp_id = self.experiment_id()
        all_tags = redact_value({KIND: kind, **tags})
        if parent_run_id:
            all_tags[PARENT] = parent_run_id
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in all_tags.items())
        version = code_version()
        created_tags = {**all_tags, CODE_VERSION: version["version"], **redact_value(extra_tags or {})}
        if "git_sha" in version:
            created_tags[GIT_COMMIT] = version["git_sha"]
        start_ms = None if start_time_s is None else int(start_time_s * 1000)

        def find_or_create() -> str:
            client = self._client()
            found = client.search_runs([exp_id], filter_string=query, max_results=1)
            if found:
                return found[0].info.run_id
            run = client.create_run(exp_id, start_time=start_ms, tags=created_tags, run_name=name)
            return run.info.run_id

        return self._retry(f"ensure {kind} run {name}", find_or_create)

    def log(
        self,
        run_id: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Params (written once: a re-execution adds none), metrics and tags of a run, in one batch."""
        from mlflow.entities import Metric, Param, RunTag

        def write() -> None:
            client = self._client()
            existing = client.get_run(run_id).data.params
            new_params = [Param(k, redact(v)) for k, v in (params or {}).items() if k not in existing]
            now = int(time.time() * 1000)
            ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
            run_tags = [RunTag(k, redact(str(v))) for k, v in (tags or {}).items()]
            client.log_batch(run_id, metrics=ms, params=new_params, tags=run_tags)

        self._retry(f"log to run {run_id}", write)

    def log_step_metrics(self, run_id: str, metrics: dict[str, float | None], step: int) -> None:
        """Log each metric at `step` unless it already has a value there (a re-execution or a replay
        of the same round adds no second point)."""
        from mlflow.entities import Metric

        def write() -> None:
            client = self._client()
            now = int(time.time() * 1000)
            new = [
                Metric(k, float(v), now, step)
                for k, v in metrics.items()
                if v is not None and all(m.step != step for m in client.get_metric_history(run_id, k))
            ]
            if new:
                client.log_batch(run_id, metrics=new)

        self._retry(f"log step {step} metrics to run {run_id}", write)

    def log_metric_history(
        self, run_id: str, key: str, points: Sequence[tuple[int, float]], timestamp_s: float | None = None
    ) -> None:
        """Log `key` at each (step, value), once: a metric that already has a history is left alone."""
        from mlflow.entities import Metric

        stamp = int((time.time() if timestamp_s is None else timestamp_s) * 1000)
        metrics = [Metric(key, float(v), stamp, int(s)) for s, v in points]

        def write() -> None:
            client = self._client()
            if not metrics or client.get_metric_history(run_id, key):
                return
            for start in range(0, len(metrics), MAX_BATCH):
                client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH])

        self._retry(f"log {key} history to run {run_id}", write)

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

    def log_plot(self, run_id: str, name: str, png: bytes) -> str:
        """Log a PNG under `plots/` of the run, named by its content (a later plot never replaces one that a
        materialization already links to); returns the URL the MLflow server serves it at."""
        file = f"{name}-{hashlib.sha256(png).hexdigest()[:12]}.png"
        self.log_artifact_bytes(run_id, file, png, artifact_path="plots")
        return self.artifact_url(run_id, f"plots/{file}")

    def artifact_url(self, run_id: str, path: str) -> str:
        """The MLflow server's URL of a run's artifact (an image there renders in Dagster's metadata)."""
        return f"{self._ui()}/get-artifact?path={quote(path)}&run_uuid={run_id}"

    def log_predictor(
        self,
        run_id: str,
        predictor_dir: str,
        input_example: Any,
        name: str = "predictor",
        step: int = 0,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float | None] | None = None,
    ) -> str:
        """Log a predictor saved by `Predictor.save` as one MLflow logged model (pyfunc, model from code)
        with its signature, input example, parameters and metrics (shown on the model's page and in the
        models table); once per run. Returns the model id (URI `models:/<id>`).

        `input_example`: a pandas DataFrame with the predictor's feature columns.
        """
        params = {k: str(v) for k, v in (params or {}).items() if v is not None}
        metrics = {k: float(v) for k, v in (metrics or {}).items() if v is not None and math.isfinite(v)}

        def write() -> str:
            import lightgbm
            import mlflow
            import mlflow.pyfunc
            from mlflow.entities import LoggedModelOutput, LoggedModelStatus
            from mlflow.models import Model, ModelSignature
            from mlflow.types import ColSpec, Schema

            client = self._client()
            run = client.get_run(run_id)
            for output in (run.outputs.model_outputs if run.outputs else None) or []:
                logged = client.get_logged_model(output.model_id)
                if logged.name == name and logged.status == LoggedModelStatus.READY:
                    return logged.model_id
            model = client.create_logged_model(
                run.info.experiment_id,
                name=name,
                source_run_id=run_id,
                model_type="climb-predictor",
                params=params,
            )
            signature = ModelSignature(
                inputs=Schema([ColSpec("double", c) for c in input_example.columns]),
                outputs=Schema([ColSpec("double")]),
            )
            # The MLmodel file names the logged model and run, as mlflow.pyfunc.log_model would write it.
            meta = Model(
                artifact_path=model.artifact_location,
                model_uuid=model.model_id,
                run_id=run_id,
                model_id=model.model_id,
            )
            import numpy
            import scipy

            # save_model validates the input example by copying the model's files with a progress bar per
            # copy (three lines in a step's log for nine small files); MLflow reads the switch per call.
            from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as BARS

            with tempfile.TemporaryDirectory() as tmp, _mlflow_switch(BARS, "false"):
                target = os.path.join(tmp, "model")
                mlflow.pyfunc.save_model(
                    target,
                    python_model=str(PREDICTOR_CODE),
                    artifacts={PREDICTOR_ARTIFACT: predictor_dir},
                    code_paths=[str(predictor_package(Path(tmp) / "code"))],
                    signature=signature,
                    input_example=input_example,
                    mlflow_model=meta,
                    # Explicit requirements: MLflow would otherwise infer them in a subprocess (seconds).
                    pip_requirements=[
                        f"mlflow=={mlflow.__version__}",
                        f"lightgbm=={lightgbm.__version__}",
                        f"numpy=={numpy.__version__}",
                        f"scipy=={scipy.__version__}",
                    ],
                )
                client.log_model_artifacts(model.model_id, target)
            for key, value in metrics.items():
                client.log_metric(run_id, key, value, step=step, model_id=model.model_id)
            client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
            client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=step)])
            return model.model_id

        return self._retry(f"log predictor model of run {run_id}", write)

    def finish(self, run_id: str, status: str = "FINISHED", end_time_s: float | None = None) -> None:
        """End a run now, or at `end_time_s` (epoch seconds) when the work it records ended earlier."""
        end_ms = None if end_time_s is None else int(end_time_s * 1000)
        self._retry(
            f"finish run {run_id}", lambda: self._client().set_terminated(run_id, status, end_time=end_ms)
        )

    def experiment_url(self) -> str:
        """The experiment's runs table in MLflow's training view: where strategies compare side by side."""
        return f"{self._ui()}/#/experiments/{self.experiment_id()}/runs?{TRAINING_VIEW}"

    def run_url(self, run_id: str) -> str:
        """Where the run shows in the MLflow UI."""
        return f"{self._ui()}/#/experiments/{self.experiment_id()}/runs/{run_id}?{TRAINING_VIEW}"

    def model_url(self, model_id: str) -> str:
        """Where a logged model shows in the MLflow UI."""
        return f"{self._ui()}/#/experiments/{self.experiment_id()}/models/{model_id}?{TRAINING_VIEW}"

    def _ui(self) -> str:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.tracking_uri.startswith(("http://", "https://")):
            return redact(self.tracking_uri).rstrip("/")
        return LOCAL_UI_URL

"""MLflow "model from code" of a round's predictor: the whole LightGBM ensemble the search used.

MLflow copies this file into the logged model and runs it when the model is loaded; the package never
imports it. The ensemble members travel as LightGBM text files plus the JSON sidecar (Predictor.save),
so nothing is pickled, and prediction goes through the same `Predictor` class as the search's own.
The few package files the predictor imports travel in the model's `code/` (tracking.PREDICTOR_PACKAGE_FILES),
so loading needs mlflow, lightgbm, numpy and scipy only, not climb_dagster (a Gaussian-process predictor is
JSON read by core/search/gp.py, which travels too).
"""

import mlflow
from mlflow.pyfunc import PythonModel

from climb_dagster.core.search.predictor import Predictor

ARTIFACT = "predictor"  # tracking.PREDICTOR_ARTIFACT: a directory written by Predictor.save


class EnsemblePredictor(PythonModel):
    """predict(DataFrame with one column per feature, e.g. a mixtures table) -> mean over the members."""

    def load_context(self, context):  # noqa: ANN001, ANN201 - MLflow's PythonModel interface

        self.predictor = Predictor.load(context.artifacts[ARTIFACT])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201, ARG002
        missing = [c for c in self.predictor.feature_names if c not in model_input.columns]
        if missing:
            raise ValueError(f"predictor input lacks the feature columns {missing}")
        return self.predictor.predict(model_input[self.predictor.feature_names].to_numpy(dtype="float64"))


mlflow.models.set_model(EnsemblePredictor())

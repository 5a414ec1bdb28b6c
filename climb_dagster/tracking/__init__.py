"""MLflow views of the pipeline's stored results: the experiment -> round -> proxy tree logged from asset
values (live, and by `python -m climb_dagster.replay` after an outage), and the predictor's model-from-code.
The MLflow client itself is a resource (`climb_dagster.resources.tracking.MlflowTracker`)."""

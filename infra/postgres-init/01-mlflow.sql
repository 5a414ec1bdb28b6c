-- Run once by the postgres image on an empty data volume: MLflow's tracking database beside Dagster's.
CREATE DATABASE mlflow;

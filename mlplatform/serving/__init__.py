"""Serving side: bundle verification and prediction. Imports no dagster, sklearn, torch or mlflow."""

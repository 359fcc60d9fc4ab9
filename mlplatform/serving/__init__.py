"""Serving: bundle verification and prediction. No dagster, sklearn, torch or mlflow."""

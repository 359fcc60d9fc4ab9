"""Dagster resources: typed handles on storage and MLflow, configured from Settings."""

"""Dagster wiring: thin assets, checks and jobs built from project specs."""

"""Promotion: the policy (``policy``), approve/reject/promote/rollback (``service``) and the
MLflow alias that follows the ledger head (``alias``). Used by the Dagster ``production`` asset,
the serving API and the CLI alike; imports no dagster, fastapi, sklearn, torch or mlflow."""

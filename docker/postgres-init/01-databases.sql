-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `dagster` (run, event log and schedule storage); add the other two.
CREATE DATABASE mlflow;      -- MLflow tracking and model registry (backend store)
CREATE DATABASE mlplatform;  -- promotion ledger and search (MLPLATFORM_LEDGER_URL, MLPLATFORM_SEARCH_URL)

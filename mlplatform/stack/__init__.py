"""``mlplatform stack up|down|status``: the team deployment on one machine.

PostgreSQL (a cluster under ``$MLPLATFORM_HOME/stack/postgres``), the MLflow tracking server,
the Dagster code server, webserver and daemon, and the serving app, each a separate process
with a pid record, a log file and a health check. Modules:

- ``config``: paths, ports, URLs and each service's environment (pure)
- ``postgres``: the cluster: initdb, start, stop, databases
- ``processes``: detached processes, their records, identity checks, bounded waits
- ``services``: the command line and health check of each service
- ``control``: up, down, status
"""

"""Team deployment of the platform: the production ``dagster.yaml`` and ``workspace.yaml``
(package data, read from the environment) and the run coordinator they name.

``mlplatform stack up`` copies both files into its ``DAGSTER_HOME``; the docker and Helm
deployments use the same files and environment variable names.
"""

from pathlib import Path

DEPLOY_DIR = Path(__file__).parent
DAGSTER_YAML = DEPLOY_DIR / "dagster.yaml"
WORKSPACE_YAML = DEPLOY_DIR / "workspace.yaml"
PROJECT_TAG = "mlplatform/project"
"""Run tag naming the project whose assets a run materializes (per-project run limits)."""

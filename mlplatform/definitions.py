"""Code location entry point for ``dagster dev``/``dagster-webserver`` (see workspace.yaml)."""

import warnings

from mlplatform.defs.build import build_defs
from mlplatform.settings import load_settings

# We use data versions, backfill policies and partitioned asset checks knowingly (pinned
# Dagster); keep their beta/preview notices out of every run log.
warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")

defs = build_defs(load_settings())

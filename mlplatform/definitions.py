"""Code location entry point for ``dagster dev``/``dagster-webserver`` (see workspace.yaml)."""

from mlplatform.defs.build import build_defs
from mlplatform.settings import load_settings

defs = build_defs(load_settings())

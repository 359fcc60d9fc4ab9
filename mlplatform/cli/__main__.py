"""``python -m mlplatform.cli``."""

from mlplatform.cli import app

app()

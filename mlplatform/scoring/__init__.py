"""Batch scoring: a file of raw rows in, one prediction per row out, streamed in chunks.

No dagster, sklearn, torch or mlflow on this path (an import-linter contract): the bundle is
loaded with ``mlplatform.bundles.format.load``, the loader serving uses.
"""

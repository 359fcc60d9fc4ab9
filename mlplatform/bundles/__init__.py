"""Bundles: the format (manifest, hashes, verify, load), building (export, audit, publish) and
the catalog of published bundles. No dagster or fastapi; ``format`` and ``catalog`` need no
ML library either, so serving loads bundles without them."""

"""The MLflow model registry over a tracking server's REST API (httpx, no mlflow import).

The ``promotion.alias.Tracker`` of the serving process: enough to move the alias
``production`` after a rollback (find a bundle's model version, point the alias at it) and to
read it. Registering a bundle needs the platform's MLflow client (``resources.mlflow``), so it
is refused here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

PRODUCTION_ALIAS = "production"  # the same alias as resources.mlflow.PRODUCTION_ALIAS


class MissingError(RuntimeError):
    """The tracking server has no such resource (HTTP 404)."""


def is_server_uri(tracking_uri: str | None) -> bool:
    """Is ``tracking_uri`` a tracking server (and not a local file or database)?"""
    return bool(tracking_uri) and str(tracking_uri).startswith(("http://", "https://"))


class RestRegistry:
    """The model registry of the MLflow tracking server at ``tracking_uri``."""

    def __init__(self, tracking_uri: str, timeout_s: float = 10.0) -> None:
        self._api = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow"
        self._timeout = timeout_s

    def version_of_bundle(self, project: str, bundle_id: str) -> str | None:
        """The registered model version holding a bundle (None if it was never registered)."""
        response = self._call(
            "GET",
            "model-versions/search",
            params={"filter": f"name = '{project}' and tags.bundle_id = '{bundle_id}'"},
        )
        versions = response.json().get("model_versions", [])
        return str(versions[0]["version"]) if versions else None

    def register_bundle(
        self,
        project: str,
        bundle_dir: Path,
        manifest: dict[str, Any],
        lineage: dict[str, str] | None = None,
    ) -> str:
        raise RuntimeError(
            f"bundle {manifest.get('bundle_id')} has no MLflow model version, and the serving "
            "process cannot register one; promote it through the platform (Dagster or the CLI)"
        )

    def set_production_alias(self, project: str, bundle_id: str) -> str | None:
        """Point the alias ``production`` at the bundle's version (idempotent)."""
        version = self.version_of_bundle(project, bundle_id)
        if version is not None:
            self._call(
                "POST",
                "registered-models/alias",
                json={"name": project, "alias": PRODUCTION_ALIAS, "version": version},
            )
        return version

    def production_alias(self, project: str) -> str | None:
        """The bundle id the alias ``production`` points at (None: no such alias yet)."""
        try:
            response = self._call(
                "GET",
                "registered-models/alias",
                params={"name": project, "alias": PRODUCTION_ALIAS},
            )
        except MissingError:
            return None
        tags = response.json().get("model_version", {}).get("tags", [])
        return next((str(t["value"]) for t in tags if t.get("key") == "bundle_id"), None)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; errors name the endpoint, never the URL (it may hold credentials)."""
        try:
            response = httpx.request(method, f"{self._api}/{path}", timeout=self._timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise RuntimeError(
                f"MLflow tracking server unreachable ({type(exc).__name__} on {path})"
            ) from None
        if response.status_code == 404:
            raise MissingError(f"MLflow answered 404 to {method} {path}")
        if response.is_error:
            raise RuntimeError(f"MLflow answered {response.status_code} to {method} {path}")
        return response

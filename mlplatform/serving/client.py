"""Pull a project's production bundle over HTTP, verify it, cache it, predict in process.

Imports httpx, numpy and the bundle loader only (pandas is optional: DataFrames are accepted
but never imported here), so an application can embed it without the platform's training
stack. Every downloaded file is checked against the manifest's sha256 before the bundle is
cached; a tampered download raises :class:`BundleError` and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from mlplatform.bundles.format import BUNDLE_ID, MANIFEST, Bundle, BundleError, load
from mlplatform.serving.predictor import FastPredictor, format_predictions

log = logging.getLogger(__name__)
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ClientError(OSError):
    """The server refused or could not be reached (like ``urllib.error.URLError``)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mlplatform/bundles`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlplatform" / "bundles"


def _safe_relpath(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if (
        not rel
        or "\\" in rel
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        raise BundleError(f"manifest lists an unsafe file path {rel!r}")
    return path


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of an error answer (its text when it is not our JSON)."""
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text


class Client:
    """HTTP client of the serving app: production manifests, verified pulls, local predict.

    ``predict`` uses the bundle of the latest ``pull`` of the project (pulling once if there
    is none); call ``pull`` again to pick up a new production bundle (a cheap 304 when it has
    not changed). Thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        cache_dir: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, transport=transport, timeout=timeout
        )
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._manifests: dict[str, tuple[str, dict[str, Any]]] = {}
        self._bundles: dict[str, Bundle] = {}  # bundle id -> loaded, verified bundle
        self._predictors: dict[str, FastPredictor] = {}  # project -> predictor of last pull
        self._lock = threading.RLock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- HTTP ------------------------------------------------------------------------------

    def _get(self, url: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        try:
            response = self.http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ClientError(f"GET {url}: {exc}") from exc
        if response.status_code >= 400:
            raise ClientError(
                f"GET {url}: HTTP {response.status_code}: {_detail(response)}",
                response.status_code,
            )
        return response

    def _etag_file(self, project: str) -> Path | None:
        if not SAFE_NAME.match(project):
            return None
        return self.cache_dir / ".production" / f"{project}.json"

    def _cached_manifest(self, project: str) -> tuple[str, dict[str, Any]] | None:
        if project in self._manifests:
            return self._manifests[project]
        path = self._etag_file(project)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            etag, manifest = str(data["etag"]), dict(data["manifest"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        bundle_id = manifest.get("bundle_id")
        if not isinstance(bundle_id, str) or not BUNDLE_ID.match(bundle_id):
            return None
        if etag != f'"{bundle_id}"':
            return None
        return etag, manifest

    def _remember_manifest(self, project: str, etag: str, manifest: dict[str, Any]) -> None:
        self._manifests[project] = (etag, manifest)
        path = self._etag_file(project)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"etag": etag, "manifest": manifest}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # the cache is an optimisation; never fail because of it
            log.warning("cannot write %s: %s", path, exc)

    def production_manifest(self, project: str) -> dict[str, Any]:
        """The production manifest of a project (``If-None-Match`` with the cached ETag)."""
        with self._lock:
            cached = self._cached_manifest(project)
        headers = {"If-None-Match": cached[0]} if cached else {}
        response = self._get(f"/v1/projects/{quote(project, safe='')}/production", headers)
        if response.status_code == 304 and cached is not None:
            with self._lock:
                self._manifests[project] = cached
            return cached[1]
        manifest = response.json()
        bundle_id = manifest.get("bundle_id")
        if not isinstance(bundle_id, str) or not BUNDLE_ID.match(bundle_id):
            raise BundleError(f"{project}: the server sent a manifest without a valid bundle id")
        etag = response.headers.get("ETag") or f'"{bundle_id}"'
        with self._lock:
            self._remember_manifest(project, etag, manifest)
        return manifest

    # -- bundles ---------------------------------------------------------------------------

    def _download(self, manifest: Mapping[str, Any], tmp: Path) -> None:
        bundle_id = manifest["bundle_id"]
        files = [MANIFEST, *manifest.get("files", {})]
        for rel in files:
            target = tmp.joinpath(*_safe_relpath(rel).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            url = f"/v1/bundles/{bundle_id}/files/{quote(rel)}"
            try:
                with self.http.stream("GET", url) as response:
                    if response.status_code != 200:
                        response.read()
                        raise ClientError(
                            f"GET {url}: HTTP {response.status_code}: {_detail(response)}",
                            response.status_code,
                        )
                    with target.open("wb") as fh:
                        for chunk in response.iter_bytes(1 << 20):
                            fh.write(chunk)
            except httpx.HTTPError as exc:
                raise ClientError(f"GET {url}: {exc}") from exc

    def _fetch(self, manifest: Mapping[str, Any]) -> Bundle:
        """Download into a temp folder, verify every hash, then rename into the cache."""
        bundle_id = manifest["bundle_id"]
        final = self.cache_dir / bundle_id
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{bundle_id[:12]}-", dir=self.cache_dir))
        try:
            self._download(manifest, tmp)
            bundle = load(tmp)  # every sha256, the manifest's own id, then the ONNX session
            if bundle.bundle_id != bundle_id:
                raise BundleError(f"downloaded manifest is {bundle.bundle_id}, not {bundle_id}")
            try:
                os.replace(tmp, final)
            except OSError:  # a concurrent pull got there first (bundles are immutable)
                shutil.rmtree(tmp, ignore_errors=True)
                return load(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bundle.path = final
        return bundle

    def _bundle(self, manifest: Mapping[str, Any]) -> Bundle:
        bundle_id = manifest["bundle_id"]
        if bundle_id in self._bundles:
            return self._bundles[bundle_id]
        cached = self.cache_dir / bundle_id
        bundle = None
        if cached.is_dir():
            try:
                bundle = load(cached)
            except BundleError as exc:
                log.warning("cached bundle %s is unusable (%s); downloading again", bundle_id, exc)
                shutil.rmtree(cached, ignore_errors=True)
        if bundle is None:
            bundle = self._fetch(manifest)
        self._bundles[bundle_id] = bundle
        return bundle

    def pull(self, project: str) -> Bundle:
        """The verified production bundle of a project, from the cache when it is there."""
        manifest = self.production_manifest(project)
        with self._lock:
            bundle = self._bundle(manifest)
            current = self._predictors.get(project)
            if current is None or current.bundle is not bundle:
                self._predictors[project] = FastPredictor(bundle)
                used = {p.bundle.bundle_id for p in self._predictors.values()}
                self._bundles = {k: v for k, v in self._bundles.items() if k in used}
        return bundle

    def predict(
        self, project: str, rows: Sequence[Mapping[str, Any]] | Any
    ) -> list[dict[str, Any]]:
        """Predict in process from the pulled bundle; rows are dicts or a pandas DataFrame."""
        predictor = self._predictors.get(project)
        if predictor is None:
            self.pull(project)
            predictor = self._predictors[project]
        if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):  # a DataFrame
            frame: Any = rows  # duck-typed: no pandas import in serving
            columns = predictor.bundle.schema.feature_columns
            n = len(frame)
            raw = {
                c: frame[c].to_numpy(dtype=object) if c in frame.columns else [None] * n
                for c in columns
            }
            if n == 0:
                return []
            return format_predictions(predictor.bundle.predict_columns(raw), predictor.classes)
        return predictor.predict_rows(rows)

    # -- reviews (the caller's token decides who is recorded) --------------------------------

    def _post(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post(url, json=dict(body))
        except httpx.HTTPError as exc:
            raise ClientError(f"POST {url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            raise ClientError(
                f"POST {url}: HTTP {response.status_code}: {detail}", response.status_code
            )
        return dict(response.json())

    def bundle_ids(self, project: str) -> list[str]:
        """Every bundle id the server knows for a project: candidates and past production."""
        base = f"/v1/projects/{quote(project, safe='')}"
        candidates = self._get(f"{base}/candidates").json()
        promotions = self._get(f"{base}/promotions").json()
        ids = {c["bundle_id"] for c in candidates.get("candidates", [])}
        ids |= {p["to_bundle"] for p in promotions.get("promotions", [])}
        return sorted(ids)

    def decide(self, project: str, bundle_id: str, verdict: str, comment: str) -> dict[str, Any]:
        """Record ``approve`` or ``reject`` of a candidate (needs an approver token)."""
        if verdict not in ("approve", "reject"):
            raise ValueError(f"verdict must be approve or reject, not {verdict!r}")
        url = f"/v1/projects/{quote(project, safe='')}/candidates/{quote(bundle_id, safe='')}"
        return self._post(f"{url}/{verdict}", {"comment": comment})

    def rollback(self, project: str, to_bundle: str | None, reason: str) -> dict[str, Any]:
        """Point production back at ``to_bundle`` (None: the previous one); approver token."""
        url = f"/v1/projects/{quote(project, safe='')}/rollback"
        return self._post(url, {"to_bundle": to_bundle, "reason": reason})

    def shadow(self, project: str, bundle_id: str | None) -> dict[str, Any]:
        """Attach ``bundle_id`` in shadow, or detach the shadow (None); approver token."""
        base = f"/v1/projects/{quote(project, safe='')}"
        if bundle_id is not None:
            return self._post(f"{base}/candidates/{quote(bundle_id, safe='')}/shadow", {})
        url = f"{base}/shadow"
        try:
            response = self.http.delete(url)
        except httpx.HTTPError as exc:
            raise ClientError(f"DELETE {url}: {exc}") from exc
        if response.status_code >= 400:
            raise ClientError(
                f"DELETE {url}: HTTP {response.status_code}: {_detail(response)}",
                response.status_code,
            )
        return dict(response.json())

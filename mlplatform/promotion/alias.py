"""The MLflow registry alias ``production`` follows the ledger's production pointer.

One function for every path that moves production (the CLI rollback, the API rollback, the
Dagster ``production`` asset): after its compare-and-swap, the caller points the alias at the
ledger head *read then*, never at its own row, and reads the head again after writing the alias;
while the head moved in between (a concurrent promotion or rollback) it writes the alias again.
So the last alias write of all racing callers names the newest head, whatever order the writes
land in. A published bundle without a model version (a build killed between publishing and
registering, with older code) is registered first, so the alias can always follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # SQLAlchemy and Alembic: imported when the ledger is first used
    from mlplatform.ledger import Ledger

# How often the alias is written while the head keeps moving under it before giving up.
MAX_ROUNDS = 20


class Tracker(Protocol):
    """What promotion needs of the model registry: ``resources.mlflow.MlflowTracking`` in the
    platform, ``registry_rest.RestRegistry`` in the serving process (no mlflow import)."""

    def version_of_bundle(self, project: str, bundle_id: str) -> str | None: ...

    def register_bundle(
        self,
        project: str,
        bundle_dir: Path,
        manifest: dict[str, Any],
        lineage: dict[str, str] | None = None,
    ) -> str: ...

    def set_production_alias(self, project: str, bundle_id: str) -> str | None: ...

    def production_alias(self, project: str) -> str | None: ...


class AliasSyncError(Exception):
    """The registry could not be brought in line with the ledger (the message says why)."""


@dataclass(frozen=True)
class Synced:
    """Where the alias points after a sync: the ledger head and its model version."""

    bundle_id: str | None
    version: str | None
    rounds: int


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def ensure_registered(registry: Tracker, project: str, bundles_dir: Path, bundle_id: str) -> str:
    """The model version of a published bundle; registers the bundle (verified first) when it
    has none. Raises AliasSyncError when the bundle is unusable or the registry fails."""
    from mlplatform.bundles.format import BundleError, verify  # numpy: only when registering

    try:
        version = registry.version_of_bundle(project, bundle_id)
        if version is not None:
            return version
        path = bundles_dir / bundle_id
        manifest = verify(path)
        return registry.register_bundle(project, path, manifest)
    except BundleError as exc:
        raise AliasSyncError(
            f"{project}: bundle {bundle_id} has no MLflow model version and cannot be "
            f"registered: {exc}"
        ) from None
    except Exception as exc:  # the registry's own errors (unreachable server, SQL errors)
        raise AliasSyncError(
            f"{project}: cannot register bundle {bundle_id} in MLflow ({_first_line(exc)}); "
            "check MLPLATFORM_MLFLOW_TRACKING_URI and try again"
        ) from exc


def sync_production_alias(
    ledger: Ledger, registry: Tracker, project: str, bundles_dir: Path
) -> Synced:
    """Point the alias ``production`` at the ledger head, until the head holds still after
    the write. Call it after every compare-and-swap on the production pointer."""
    for round_ in range(1, MAX_ROUNDS + 1):
        head = ledger.production(project)
        if head is None:
            return Synced(None, None, round_)
        ensure_registered(registry, project, bundles_dir, head.to_bundle)
        try:
            version = registry.set_production_alias(project, head.to_bundle)
        except Exception as exc:
            raise AliasSyncError(
                f"{project}: cannot set the MLflow alias to {head.to_bundle} "
                f"({_first_line(exc)}); the promotion sensor re-syncs it"
            ) from exc
        after = ledger.production(project)
        if after is not None and after.seq == head.seq:
            return Synced(head.to_bundle, version, round_)
    raise AliasSyncError(
        f"{project}: production moved during each of {MAX_ROUNDS} alias updates; "
        "the promotion sensor re-syncs the alias"
    )

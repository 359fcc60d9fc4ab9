"""Counts of each project's shadow bundle in a serving process, for ``/healthz``: rows it
predicted, requests it never saw because the log's queue was full, rows it could not
predict, and the last error. A handful of integers per project (the counts restart when
another bundle is attached), updated by the log writer once per flush, never on the request
path."""

from __future__ import annotations

import threading
from dataclasses import dataclass

ERROR_CHARS = 300  # the last error is kept this short


@dataclass
class ShadowCounts:
    """What the shadow ``bundle_id`` did since it was first used by this process."""

    bundle_id: str | None = None
    predicted_requests: int = 0
    predicted_rows: int = 0
    dropped_requests: int = 0  # logged-request samples dropped (queue full): never shadowed
    failed_rows: int = 0  # rows it could not predict (its schema refused them, or it failed)
    last_error: str | None = None


class ShadowCounter:
    """The ``ShadowCounts`` of every project, safe to read from the event loop."""

    def __init__(self) -> None:
        self._counts: dict[str, ShadowCounts] = {}
        self._lock = threading.Lock()

    def record(
        self,
        project: str,
        bundle_id: str,
        *,
        requests: int = 0,
        rows: int = 0,
        dropped: int = 0,
        failed: int = 0,
        error: str | None = None,
    ) -> None:
        """Add what bundle ``bundle_id`` did (counts restart when the bundle changes)."""
        with self._lock:
            found = self._counts.get(project)
            if found is None or found.bundle_id != bundle_id:
                found = self._counts[project] = ShadowCounts(bundle_id)
            found.predicted_requests += requests
            found.predicted_rows += rows
            found.dropped_requests += dropped
            found.failed_rows += failed
            if error is not None:
                found.last_error = error[:ERROR_CHARS]

    def counts(self, project: str, bundle_id: str | None) -> ShadowCounts:
        """The counts of ``bundle_id`` in ``project`` (zeros when it has done nothing yet)."""
        with self._lock:
            found = self._counts.get(project)
            if bundle_id is None or found is None or found.bundle_id != bundle_id:
                return ShadowCounts(bundle_id)
            return ShadowCounts(**vars(found))

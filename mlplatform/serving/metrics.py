"""Prometheus metrics of one app (its own registry, so apps in one process never collide)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UNMATCHED = "<unmatched>"


class ServingMetrics:
    """Request counts and latencies by route template, production bundles, predictions."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlplatform_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlplatform_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.production = Gauge(
            "mlplatform_production_bundle_info",
            "1 for the bundle each project serves now.",
            ["project", "bundle_id"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlplatform_predicted_rows",
            "Rows predicted over HTTP, by project and bundle.",
            ["project", "bundle_id"],
            registry=self.registry,
        )
        self.swap_failures = Counter(
            "mlplatform_bundle_swap_failures",
            "Production bundles that could not be loaded or verified (the old one stays).",
            ["project"],
            registry=self.registry,
        )

    @functools.cache  # noqa: B019 - one per app, few label sets; labels() is costly per call
    def request_children(self, route: str, method: str, status: str) -> tuple[Any, Any]:
        """The (counter, histogram) children of one route/method/status."""
        return self.requests.labels(route, method, status), self.latency.labels(route, method)

    @functools.cache  # noqa: B019
    def predictions_child(self, project: str, bundle_id: str) -> Any:
        return self.predictions.labels(project, bundle_id)

    def production_changed(self, project: str, old: str | None, new: str | None) -> None:
        """Move the project's info gauge from the old bundle to the new one."""
        if old is not None:
            with contextlib.suppress(KeyError):
                self.production.remove(project, old)
        if new is not None:
            self.production.labels(project, new).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            method = scope.get("method", "")
            counter, latency = self.metrics.request_children(route, method, str(status))
            counter.inc()
            latency.observe(time.perf_counter() - start)

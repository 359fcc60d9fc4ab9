"""POST an alert to a webhook: JSON, retried with exponential backoff on 5xx, 429 and
connection errors; a 4xx other than 429 is not retried (the receiver refuses it)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlplatform.alerting.messages import Alert


def where(url: str) -> str:
    """Scheme and host of a webhook URL: its path and query often are the secret (Slack)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


@dataclass(frozen=True)
class Delivery:
    """How a POST ended: ``ok``, the attempts made, the last problem (naming the host only)
    and whether trying later could help (not after a 4xx other than 429)."""

    ok: bool
    attempts: int
    problem: str = ""
    retryable: bool = True


def post(
    url: str,
    alert: Alert,
    *,
    retries: int,
    backoff_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Deliver one alert: at most ``retries + 1`` attempts, waiting ``backoff_seconds``,
    then twice that, ... between them."""
    body = json.dumps(alert.payload()).encode()
    problem = ""
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "mlplatform-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
                response.read()
            return Delivery(True, attempt)
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} from {where(url)}"
            if exc.code < 500 and exc.code != 429:
                return Delivery(False, attempt, problem + " (refused: not retried)", False)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = f"cannot reach {where(url)}: {reason}"
        if attempt <= retries:
            sleep(backoff_seconds * 2 ** (attempt - 1))
    return Delivery(False, retries + 1, problem)

"""Spec section ``alerts``: where a project's notifications go (a webhook), and which."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from mlplatform.spec.vocabulary import Frozen

AlertEvent = Literal["failed_check", "failed_run", "promotion", "rollback"]
ALERT_EVENTS: tuple[AlertEvent, ...] = ("failed_check", "failed_run", "promotion", "rollback")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Alerts(Frozen):
    """A generic webhook (JSON POST with a Slack-compatible ``text``) per project."""

    webhook_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds the webhook URL (the URL "
        "is a secret: it never goes in the spec). Unset: no alerts.",
    )
    events: tuple[AlertEvent, ...] = Field(
        default=ALERT_EVENTS, description="Which events alert (default: all)."
    )
    warnings: bool = Field(
        default=False,
        description="Also alert on failed checks of severity WARN (e.g. drift with "
        "drift.severity: warn); blocking checks always alert.",
    )
    retries: int = Field(default=3, ge=0, le=10, description="Retries of a failed POST.")
    backoff_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Wait before the first retry; doubled each time."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Per POST.")

    @field_validator("webhook_env")
    @classmethod
    def _a_name_not_a_url(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            # the value is not shown: it may well be the secret URL itself
            raise ValueError(
                "not an environment variable name (letters, digits, _); put the webhook URL "
                "in an environment variable and give its name here, e.g. CHURN_ALERTS_URL"
            )
        return v

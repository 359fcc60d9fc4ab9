"""Spec sections about running by itself: sensors, automation, the cron schedule."""

from __future__ import annotations

from pydantic import Field, field_validator

from mlplatform.spec.vocabulary import Frozen


class Automation(Frozen):
    """Sensors, declarative automation and the retrain schedule of a project."""

    enabled: bool = Field(
        default=True, description="false: no landing sensor, automation or schedule runs."
    )
    sensor_interval_seconds: int = Field(default=5, ge=5)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ("l",)),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


def _cron_token_ok(token: str, weekday: bool, lo: int, hi: int, words: tuple[str, ...]) -> bool:
    """One comma-separated item of a cron field: '*', 'a', 'a-b', each with an optional '/n'
    step; a day-of-week item may end in '#n' (the n-th such weekday of the month)."""
    head, nth, n = token.partition("#")
    if nth and not (weekday and n in ("1", "2", "3", "4", "5")):
        return False
    value, slash, step = head.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return False
    if value in ("*", "?"):
        return True
    bounds = value.split("-")
    return len(bounds) <= 2 and all(
        b in words or (b.isdigit() and lo <= int(b) <= hi) for b in bounds
    )


class Schedule(Frozen):
    """Retraining schedule (cron, evaluated by the Dagster daemon)."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError("cron needs five fields, e.g. '0 3 * * *'")
        for (what, lo, hi, words), field in zip(_CRON_FIELDS, v.split(), strict=True):
            for token in field.lower().split(","):
                if not _cron_token_ok(token, what == "day of week", lo, hi, words):
                    raise ValueError(
                        f"{token!r} is not a valid {what} ({lo}-{hi}, '*', ranges a-b, "
                        "lists a,b, steps */n); e.g. '0 3 * * *'"
                    )
        return v

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return v

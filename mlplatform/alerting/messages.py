"""One alert: a key that identifies it (deduplication), the event and a one-line text."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    """An event worth telling someone about. ``key`` is unique per event: an alert whose key
    was sent is never sent again."""

    key: str
    project: str
    event: str  # one of spec.ALERT_EVENTS
    text: str
    details: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body: ``text`` for Slack-compatible receivers, the fields for the rest."""
        return {
            "text": self.text,
            "project": self.project,
            "event": self.event,
            "details": self.details,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(**data)


def check_prefix(asset: str, check: str, partition: str | None) -> str:
    """The start of the keys of one check on one partition (its failures differ by reason)."""
    return f"check:{asset}:{check}:{partition or '-'}:"


def failed_check(
    project: str, asset: str, check: str, partition: str | None, blocking: bool, why: str, run: str
) -> Alert:
    where = f"{asset}[{partition}]" if partition else asset
    kind = "blocking check" if blocking else "check (warning)"
    return Alert(
        key=check_prefix(asset, check, partition) + hashlib.sha256(why.encode()).hexdigest()[:16],
        project=project,
        event="failed_check",
        text=f":x: {project}: {kind} `{check}` failed on {where}: {_short(why)}",
        details={
            "asset": asset,
            "check": check,
            "partition": partition,
            "blocking": blocking,
            "description": why,
            "run_id": run,
        },
    )


def failed_run(project: str, run_id: str, job: str, partition: str | None, why: str) -> Alert:
    where = f" [{partition}]" if partition else ""
    return Alert(
        key=f"run:{run_id}",
        project=project,
        event="failed_run",
        text=f":boom: {project}: run {run_id[:8]} of {job}{where} failed: {_short(why)}",
        details={"run_id": run_id, "job": job, "partition": partition, "error": why},
    )


def promotion(
    project: str, row_id: int, kind: str, before: str | None, after: str, actor: str, reason: str
) -> Alert:
    verb = "rolled back" if kind == "rollback" else "promoted"
    icon = ":rewind:" if kind == "rollback" else ":rocket:"
    return Alert(
        key=f"promotion:{project}:{row_id}",
        project=project,
        event="rollback" if kind == "rollback" else "promotion",
        text=f"{icon} {project}: {actor} {verb} production {(before or '-')[:12]} -> "
        f"{after[:12]}: {_short(reason) or 'no reason given'}",
        details={"from": before, "to": after, "actor": actor, "reason": reason},
    )


def _short(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."

"""Blocking checks reported from inside an asset: results first, output only if all pass."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import dagster as dg


def check_specs(key: dg.AssetKey, names: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """Blocking check specs named ``names`` (name -> description) on one asset."""
    return [
        dg.AssetCheckSpec(name, asset=key, blocking=True, description=desc)
        for name, desc in names.items()
    ]


def check_results(
    problems: Mapping[str, list[str]], metadata: Mapping[str, Mapping[str, object]] | None = None
) -> Iterator[dg.AssetCheckResult]:
    for name, found in problems.items():
        yield dg.AssetCheckResult(
            check_name=name,
            passed=not found,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(found) if found else "passed",
            metadata=dict((metadata or {}).get(name, {})) | {"problems": len(found)},
        )


def fail_if_any(what: str, problems: Mapping[str, list[str]]) -> None:
    """Stop the step (nothing is written) when any check found a problem."""
    found = [p for ps in problems.values() for p in ps]
    if found:
        raise dg.Failure(
            description=f"{what}: {len(found)} blocking problem(s):\n- " + "\n- ".join(found),
            allow_retries=False,
        )

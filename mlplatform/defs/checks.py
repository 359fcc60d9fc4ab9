"""Blocking checks reported from inside an asset: results first, output only if all pass."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg


def check_specs(
    key: dg.AssetKey,
    names: Mapping[str, str],
    partitions_def: dg.PartitionsDefinition | None = None,
) -> list[dg.AssetCheckSpec]:
    """Blocking check specs named ``names`` (name -> description) on one asset, evaluated per
    partition of ``partitions_def`` so one bad partition blocks only its own downstream."""
    return [
        dg.AssetCheckSpec(
            name, asset=key, blocking=True, description=desc, partitions_def=partitions_def
        )
        for name, desc in names.items()
    ]


def check_results(
    problems: Mapping[str, list[str]], metadata: Mapping[str, Mapping[str, Any]] | None = None
) -> Iterator[dg.AssetCheckResult]:
    for name, found in problems.items():
        yield dg.AssetCheckResult(
            check_name=name,
            passed=not found,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(found) if found else "passed",
            metadata={**(metadata or {}).get(name, {}), "problems": len(found)},
        )


def audited_output(
    what: str,
    output: dg.Output,
    problems: Mapping[str, list[str]],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[object]:
    """Write-audit-publish for a DataFrame partition: the output is stored only when every
    check passed (and then the results refer to it); otherwise the results are reported,
    the step fails and whatever was stored before stays as it was."""
    if any(problems.values()):
        yield from check_results(problems, metadata)
        fail_if_any(what, problems)
    yield output
    yield from check_results(problems, metadata)


def fail_if_any(what: str, problems: Mapping[str, list[str]]) -> None:
    """Stop the step (nothing is written) when any check found a problem."""
    found = [p for ps in problems.values() for p in ps]
    if found:
        raise dg.Failure(
            description=f"{what}: {len(found)} blocking problem(s):\n- " + "\n- ".join(found),
            allow_retries=False,
        )

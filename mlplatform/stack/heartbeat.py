"""``python -m mlplatform.stack.heartbeat SINCE``: the daemon's health check.

Exits 0 when every daemon the instance (``$DAGSTER_HOME``) requires has written a heartbeat at
or after ``SINCE`` (a Unix time: when we started the daemon process), else 1. Heartbeats live
in the instance's storage, so a heartbeat left by an earlier daemon does not count.
"""

from __future__ import annotations

import sys


def fresh_daemons(since: float) -> tuple[list[str], list[str]]:
    """(daemon types with a heartbeat since ``since``, those without one)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        required = sorted(instance.get_required_daemon_types())
        beats = instance.get_daemon_heartbeats()
    fresh = [t for t in required if t in beats and beats[t].timestamp >= since]
    return fresh, [t for t in required if t not in fresh]


def main(argv: list[str]) -> int:
    fresh, missing = fresh_daemons(float(argv[0]))
    print(f"fresh: {', '.join(fresh) or '-'}; waiting for: {', '.join(missing) or '-'}")
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

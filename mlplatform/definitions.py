"""Code location entry point for ``dagster dev``/``dagster-webserver`` (see workspace.yaml).

Every Dagster process of the platform loads this module: ``mlplatform ui``, the team stack's
code server, the docker images, and run workers. It refuses, with one line on stderr, to load
into a Dagster instance other than the platform's own (``load_settings().dagster_home``):
runs recorded elsewhere (a temporary instance, another DAGSTER_HOME) while assets are written
into the platform's home would make the platform's run history and status lie. A command
(``dagster asset materialize``, ``dagster-daemon run -m``) exits with that line; a code server
(``dagster api grpc``, as ``dagster dev`` and ``dagster-webserver`` start one) serves it as the
code location's load error, so the web UI shows it too.
"""

import os
import sys
import warnings

from mlplatform.defs.build import build_defs
from mlplatform.settings import instance_problem, load_settings

settings = load_settings()
_problem = instance_problem(settings, os.environ.get("DAGSTER_HOME"))
if _problem is not None:
    print(_problem, file=sys.stderr, flush=True)
    if sys.argv[1:3] == ["api", "grpc"]:  # a code server: the web UI shows this as the error
        raise RuntimeError(_problem)
    raise SystemExit(2)

# We use data versions, backfill policies and partitioned asset checks knowingly (pinned
# Dagster); keep their beta/preview notices out of every run log.
warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")

defs = build_defs(settings)

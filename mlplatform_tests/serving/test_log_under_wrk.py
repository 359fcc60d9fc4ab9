"""The prediction log under 30 s of wrk (Debian's HTTP load generator) against a real
``mlplatform serve``: every response wrk got is a 200, and every sampled request is written or
counted as dropped; the files hold exactly the written count."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlplatform_tests import waiting
from mlplatform_tests.serving import abuse
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import READER_TOKEN, TOKENS, make_env
from mlplatform_tests.serving.test_prediction_log import health, logged, settled, with_log

pytestmark = pytest.mark.e2e  # `mlplatform serve` and wrk as processes
SECONDS = 30
CONNECTIONS = 16


def wrk_script(path: Path, rows: list[dict[str, object]]) -> Path:
    body = json.dumps({"rows": rows}).replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {READER_TOKEN}"\n'
    )
    return path


def test_wrk_for_30_seconds_loses_no_response_and_counts_every_sample(
    built: Built, tmp_path: Path
) -> None:
    wrk = shutil.which("wrk")
    assert wrk, "wrk is not installed: apt-get install wrk (.ci/run installs it)"
    env = make_env(built, tmp_path, **TOKENS)
    # a queue small enough that a busy writer must drop some samples, and say so
    projects = with_log(built, tmp_path, rate=1.0, queue_requests=200, flush_seconds=1)
    script = wrk_script(tmp_path / "predict.lua", env.rows[:1])
    with abuse.serve_process(env.settings.home, projects, TOKENS, tmp_path / "serve.log") as url:
        run = subprocess.run(
            [
                wrk,
                "-t2",
                f"-c{CONNECTIONS}",
                f"-d{SECONDS}s",
                "-s",
                str(script),
                f"{url}/v1/projects/{PROJECT}/predict",
            ],
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            check=True,
        )
        report = run.stdout
        found = re.search(r"(\d+) requests in", report)
        assert found, report
        answered = int(found.group(1))
        assert answered > 100, report
        assert "Non-2xx" not in report and "Socket errors" not in report, report
        waiting.wait_for("every sample to be written or dropped", lambda: settled(url), 60)
        counts = health(url)
    # wrk counts what it received; a request in flight when it stopped may still be answered
    assert answered <= counts["offered"] <= answered + CONNECTIONS, (counts, report)
    assert counts["failed_requests"] == 0
    assert counts["written_rows"] == counts["written_requests"]
    assert len(logged(env)) == counts["written_rows"]

"""A landing file that is not a landing file (too large, a link out of the folder, a pipe)
launches no run, fails the raw step with its refusal, and shows that refusal in ``status``."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.defs.build import build_defs, data_job_name
from mlplatform.defs.status import project_status
from mlplatform.defs.ticks import tick_landing_sensor
from mlplatform_tests.projects import ProjectFactory, variant

pytestmark = pytest.mark.dagster


def sensor_tick(defs: dg.Definitions, instance: dg.DagsterInstance, p: str, cursor: str | None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        result = defs.get_sensor_def(f"{p}__landing")(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_refused_landing_files_launch_nothing_and_say_why(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    data = variant("binary", "small_binary")["data"] | {"max_file_mb": 1}
    project = make_project("binary", months=4, rows=100, data=data)
    p, home = project.spec.name, project.home
    good, big, linked, piped = project.files
    with big.open("r+b") as fh:  # sparse: 1 GiB of which nothing is written
        fh.truncate(1 << 30)
    linked.unlink()
    linked.symlink_to("/etc/passwd")
    piped.unlink()
    os.mkfifo(piped)
    (piped.parent / "x\nfake.csv").write_text("x\n")
    defs = build_defs(project.settings, [project.spec])

    requests, outcomes, cursor = tick_landing_sensor(defs, instance, project.spec)
    assert [r.partition_key for r in requests] == [good.stem] and outcomes == [True]
    again = sensor_tick(defs, instance, p, cursor)
    assert not again.run_requests
    reason = again.skip_reason.skip_message if again.skip_reason else ""
    assert f"{big.name}: 1,073,741,824 bytes (1024.0 MB), above this project's limit " in reason
    assert f"{linked.name}: a symbolic link to /etc/passwd, outside the landing folder" in reason
    assert f"{piped.name}: a named pipe (FIFO), not a regular file" in reason
    assert "x\\nfake.csv" in reason and "\n" not in reason

    job = defs.resolve_job_def(data_job_name(p))
    for path in (big, linked, piped):
        result = job.execute_in_process(
            partition_key=path.stem, instance=instance, raise_on_error=False
        )
        assert not result.success
    rows = {(r.asset, r.partition): r for r in project_status(defs, instance, project.spec)}
    assert "above this project's limit data.max_file_mb=1" in rows[(f"{p}/raw", big.stem)].reason
    assert "outside the landing folder" in rows[(f"{p}/raw", linked.stem)].reason
    assert "a named pipe (FIFO)" in rows[(f"{p}/raw", piped.stem)].reason

    good.unlink()
    good.symlink_to(Path("/etc/passwd"))  # what was built stays; the new file is refused
    shown = {
        (r.asset, r.partition): r for r in project_status(defs, instance, project.spec, home=home)
    }
    row = shown[(f"{p}/raw", good.stem)]
    assert row.state == "stale" and "landing file refused (never read)" in row.reason

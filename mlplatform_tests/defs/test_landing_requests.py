"""The landing sensor's run requests name the assets they build (raw and features).

The daemon turns a request without an asset selection into a run whose ``asset_selection`` is
empty, and declarative automation decides whether ``features`` must follow a changed ``raw``
from that field (``executed_with_root_target``). With it empty, an automation tick that reads
raw's new data version before the landing run has written features (and after the run left
"in progress") requested features again: bench/daemon_path.py saw one such extra run in 13
landings, and the daemon-path test's "exactly these runs" could fail the same way.
"""

from __future__ import annotations

import dagster as dg

from mlplatform.defs.build import build_defs
from mlplatform_tests.projects import ProjectFactory


def test_landing_requests_name_raw_and_features(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=2, rows=100)
    p = project.spec.name
    defs = build_defs(project.settings, [project.spec])
    sensor = defs.get_sensor_def(f"{p}__landing")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == [f.stem for f in project.files]
    for request in result.run_requests or []:
        assert request.asset_selection == [dg.AssetKey([p, "raw"]), dg.AssetKey([p, "features"])]

"""``<project>/predictions``: a landed partition is scored by the bundle that was production
when it landed (ledger history), on request by the current one too; automation scores each
new partition after ``raw``."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from mlplatform.bundles.format import load
from mlplatform.defs.ticks import latest_storage_id, run_automation, tick_landing_sensor
from mlplatform.ledger import Ledger
from mlplatform.resources.store import partition_path
from mlplatform_tests.projects import Trained


def stored(trained: Trained, partition: str) -> pd.DataFrame:
    p = trained.project.spec.name
    path = partition_path(
        str(trained.project.settings.assets_dir), dg.AssetKey([p, "predictions"]), partition
    )
    return pd.read_parquet(path)


def score(trained: Trained, partition: str, current: bool = False) -> dg.ExecuteInProcessResult:
    p = trained.project.spec.name
    return dg.materialize(
        [trained.defs.get_assets_def(dg.AssetKey([p, "predictions"]))],
        partition_key=partition,
        instance=trained.instance,
        resources=trained.defs.resources,
        run_config={"ops": {f"{p}__predictions": {"config": {"current": current}}}},
    )


def test_partitions_are_scored_by_the_production_of_their_landing(
    two_bundles: Trained,
) -> None:
    t = two_bundles
    spec, files, instance = t.project.spec, t.project.files, t.instance
    p = spec.name
    first, second = t.bundles
    ledger = Ledger(t.project.settings.ledger)
    _, _, landing_cursor = tick_landing_sensor(t.defs, instance, spec)
    _, auto = run_automation(t.defs, instance)  # baseline: requests nothing

    # every partition landed before any production: nothing to score it with
    early = files[0].stem
    result = score(t, early)
    assert result.success and not result.asset_materializations_for_node(f"{p}__predictions")

    ledger.promote(p, first, "ci", "first production", expected_from=None)
    changed = files[1]
    frame = pd.read_csv(changed, dtype=str, keep_default_na=False)
    frame = frame.iloc[: len(frame) - 3]  # a corrected file lands: three rows fewer
    frame.to_csv(changed, index=False)
    mark = latest_storage_id(instance)
    requests, ok, landing_cursor = tick_landing_sensor(t.defs, instance, spec, landing_cursor)
    assert [r.partition_key for r in requests] == [changed.stem] and ok == [True]
    runs, auto = run_automation(t.defs, instance, auto)
    assert runs and all(r.success for r in runs)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([p, "predictions"]), after_storage_id=mark),
        limit=10,
    ).records
    assert [r.partition_key for r in records] == [changed.stem]  # automation scored it
    ledger.promote(p, second, "ci", "second production")

    got = stored(t, changed.stem)
    assert set(got["bundle_id"]) == {first}  # the production of its landing, not today's
    assert got["row"].tolist() == list(range(len(frame)))
    rows = frame.to_dict("records")
    expected = load(t.project.settings.bundles_dir / first).predict_rows(rows)
    assert got["label"].tolist() == [e["label"] for e in expected]
    for cls in expected[0]["probabilities"]:
        assert got[f"proba_{cls}"].tolist() == pytest.approx(
            [e["probabilities"][cls] for e in expected], abs=1e-12
        )

    assert score(t, changed.stem, current=True).success
    both = stored(t, changed.stem)
    assert both.groupby("bundle_id")["row"].count().to_dict() == {
        first: len(frame),
        second: len(frame),
    }
    ledger.dispose()

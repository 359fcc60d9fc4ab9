"""The drift check reads its reference window from the partitions' files one column at a time:
the same findings as from the window concatenated into one frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlplatform.steps import drift, split
from mlplatform.steps.window_files import WindowFiles
from mlplatform_tests.projects import ProjectFactory
from mlplatform_tests.unit.test_torch_streamed import stored_window


def test_drift_against_files_equals_drift_against_frames(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=4, rows=300)
    spec = project.spec
    files = stored_window(project.files, spec, tmp_path)
    *window, current_key = sorted(files)
    frames = {k: pd.read_parquet(files[k]) for k in window}
    current = pd.read_parquet(files[current_key])
    current["plan"] = "basic"  # drift to find
    reference = WindowFiles({k: files[k] for k in window})
    from_frames = split.training_frame(frames)
    assert drift.feature_drift(reference, current, spec) == drift.feature_drift(
        from_frames, current, spec
    )
    assert drift.missing_changes(reference, current, spec) == drift.missing_changes(
        from_frames, current, spec
    )
    assert any(
        d.drifted and d.feature == "plan" for d in drift.feature_drift(reference, current, spec)
    )

"""Torch candidates train from the window's Parquet partitions read in batches: the same model
as from one frame of the window (seeded), for every task."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from upath import UPath

from mlplatform.resources.store import write_parquet
from mlplatform.spec import Candidate
from mlplatform.steps import ingest, split, train_torch
from mlplatform.steps.features import build_features
from mlplatform.steps.window_files import WindowFiles
from mlplatform_tests.projects import ProjectFactory

pytestmark = pytest.mark.training

SMALL = {"hidden_layers": [16, 8], "max_epochs": 4, "patience": 2, "batch_size": 64}


def stored_window(files: list[Path], spec: object, where: Path) -> dict[str, Path]:
    """Feature partitions written as the Parquet IO manager writes them."""
    out = {}
    for f in files:
        typed, _ = ingest.parse_partition(ingest.read_landing_file(f, spec), spec, f)  # type: ignore[arg-type]
        frame = build_features(typed, spec)  # type: ignore[arg-type]
        frame.attrs = {"raw_sha256": f"sha-of-{f.stem}"}
        path = where / f"{f.stem}.parquet"
        write_parquet(frame, UPath(path))
        out[f.stem] = path
    return out


def losses(epoch: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in epoch.items() if k != "seconds"}  # seconds: wall time


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_streamed_window_trains_the_same_model(
    make_project: ProjectFactory, task: str, tmp_path: Path
) -> None:
    project = make_project(task, months=3, rows=300)
    spec = project.spec
    files = stored_window(project.files, spec, tmp_path)
    frame = split.training_frame({k: pd.read_parquet(p) for k, p in files.items()})
    # batches smaller than a partition, and not dividing it: rows cross batch edges
    window = WindowFiles(files, batch_rows=97)
    assert len(window) == len(frame) and window.attrs(min(files)) == {
        "raw_sha256": f"sha-of-{min(files)}"
    }
    cand = Candidate(name="mlp", kind="torch", params=SMALL)
    whole = train_torch.fit_torch(frame, spec, cand)
    streamed = train_torch.fit_torch(window, spec, cand)
    assert streamed.pre == whole.pre and streamed.classes == whole.classes
    assert [losses(e.to_json()) for e in streamed.history] == [
        losses(e.to_json()) for e in whole.history
    ]
    a, b = tmp_path / "whole.safetensors", tmp_path / "streamed.safetensors"
    whole.save(a)
    streamed.save(b)
    assert a.read_bytes() == b.read_bytes()


def test_sampled_streamed_window_keeps_the_rows_a_sampled_frame_keeps(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=3, rows=300)
    spec = project.spec
    files = stored_window(project.files, spec, tmp_path)
    frames = {k: pd.read_parquet(p) for k, p in files.items()}
    for frame, key in zip(frames.values(), files, strict=True):
        frame.attrs = {"raw_sha256": f"sha-of-{key}"}
    sampled, sample = split.sampled_window(frames, 500, seed=7)
    window, streamed_sample = WindowFiles(files, batch_rows=50).sampled(500, seed=7)
    assert sample is not None and streamed_sample == sample
    assert len(window) == 500
    expected = split.training_frame(sampled)
    got = pd.concat(list(window.batches(list(expected.columns))), ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_series_equal(window.column("plan"), expected["plan"])
    manifest = window.manifest()
    assert manifest == {
        **split.training_manifest(frames, {k: f"sha-of-{k}" for k in files}),
        "streamed": {"batch_rows": 50},
    }
    cand = Candidate(name="mlp", kind="torch", params=SMALL)
    a, b = tmp_path / "frame.safetensors", tmp_path / "files.safetensors"
    train_torch.fit_torch(expected, spec, cand).save(a)
    train_torch.fit_torch(window, spec, cand).save(b)
    assert a.read_bytes() == b.read_bytes()

"""Build folders under ``staging/``: a build killed with ``kill -9`` leaves one behind, and the
next build removes it; a live build's folder is kept (real processes, real signals)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlplatform.bundles import build, staging
from mlplatform.bundles.format import InputSchema, verify
from mlplatform.steps import sklearn_onnx, train_sklearn
from mlplatform.steps.features import layout
from mlplatform_tests.projects import ProjectFactory
from mlplatform_tests.unit.test_export_bundle import frames

# A build in its own process: write the bundle to staging, say where, then wait; publish it
# when told to on stdin (or never, when killed first).
BUILDER = """
import json, sys
from pathlib import Path
import onnx
from mlplatform.spec import load_spec
from mlplatform.bundles import build
staging, bundles, spec, model, manifest = map(Path, sys.argv[1:])
stage = build.write_bundle(
    staging, onnx.load(model), load_spec(spec), json.loads(manifest.read_text())
)
print(stage, flush=True)
sys.stdin.readline()
print(build.publish_bundle(stage, bundles), flush=True)
"""


@pytest.mark.e2e  # real builder processes
def test_next_build_removes_dead_builds_and_keeps_live_ones(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=3, rows=150)
    spec = project.spec
    train, _, _ = frames(project.files, spec)
    pipeline = train_sklearn.fit_candidate(train, spec, spec.candidates[0])
    model = sklearn_onnx.pipeline_to_onnx(pipeline, spec)
    schema = InputSchema(dict(spec.columns), spec.features, spec.feature_columns, layout(spec))
    manifest = {
        "project": spec.name,
        "cutoff": "x",
        "input_schema": schema.to_json(),
        "classes": [str(c) for c in pipeline.classes_],
    }
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    root, bundles = tmp_path / "staging", tmp_path / "bundles"
    args = [root, bundles, project.settings.projects_dir / f"{spec.name}.yaml"]
    args += [tmp_path / "model.onnx", tmp_path / "manifest.json"]

    def builder() -> tuple[subprocess.Popen[str], Path]:
        proc = subprocess.Popen(
            [sys.executable, "-c", BUILDER, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line, f"builder exited with {proc.wait()}"
        return proc, Path(line)

    live, live_stage = builder()
    try:
        dead, dead_stage = builder()
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert dead_stage.is_dir() and live_stage.is_dir()

        stage = build.write_bundle(root, model, spec, manifest)  # the next build
        build.publish_bundle(stage, bundles)

        assert not dead_stage.exists()
        assert [p for p in root.iterdir() if live_stage.is_relative_to(p)]
        assert verify(live_stage)["bundle_id"]  # intact: its build can still publish it
        assert live.stdin is not None and live.stdout is not None
        live.stdin.write("\n")
        live.stdin.flush()
        assert Path(live.stdout.readline().strip()).parent == bundles
        assert live.wait(timeout=60) == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert list(root.iterdir()) == []


def test_lockless_folders_are_removed_only_when_old(tmp_path: Path) -> None:
    """Folders of older versions (no lock file) are left alone for an hour: one may still be
    in use by a build of that version."""
    old, recent = tmp_path / "shop-old", tmp_path / "build-recent"
    for folder in (old, recent):
        (folder / "model").mkdir(parents=True)
    hours_ago = time.time() - 2 * staging.UNLOCKED_STALE_AFTER_S
    os.utime(old, (hours_ago, hours_ago))

    assert staging.remove_dead_builds(tmp_path) == [old]
    assert recent.is_dir()


def test_a_finished_build_leaves_nothing_in_staging(tmp_path: Path) -> None:
    folder = staging.open_build(tmp_path / "staging")
    (folder / "bundle").mkdir()
    assert (folder / staging.LOCK).is_file()
    assert staging.remove_dead_builds(tmp_path / "staging") == []  # ours, alive: kept
    staging.close_build(folder)
    assert list((tmp_path / "staging").iterdir()) == []

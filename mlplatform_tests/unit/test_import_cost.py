"""Import cost is a feature: defining the assets (what every run worker and code server pays)
and a raw + features run load no ML library; those are imported inside the steps that use them.

Each check runs in a fresh interpreter with an import spy installed first: for every heavy
package it records where its first import came from (the mlplatform frames on the stack), so a
failure names the line to fix. No timing is asserted (see bench/run_worker.py for figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mlplatform.examples.generate import generate_example
from mlplatform.spec import load_spec
from mlplatform_tests.projects import variant

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "sklearn",
    "torch",
    "mlflow",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "optuna",
    "matplotlib",
    "scipy",
    "skops",
    "safetensors",
)
# What a data run needs, but not defining the assets (code servers, sensors, promotion runs).
DATA = ("pandas", "numpy", "pyarrow")
# What opening a Dagster instance needs, but not defining the assets.
STORAGE = ("sqlalchemy", "alembic")

# Installed before anything else in the child: a meta-path finder that never finds anything but
# notes, for the first import of each heavy package, the mlplatform frames that asked for it.
SPY = """
import importlib.util, json, os, sys, traceback
HEAVY = set({heavy!r})
PACKAGE = importlib.util.find_spec("mlplatform").submodule_search_locations[0] + os.sep
FIRST = {{}}

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in FIRST:
            FIRST[top] = [
                f"{{os.path.relpath(f.filename, os.path.dirname(PACKAGE[:-1]))}}:{{f.lineno}} "
                f"({{f.line}})"
                for f in traceback.extract_stack()[:-1]
                if f.filename.startswith(PACKAGE)
            ] or ["(no mlplatform frame: imported by a library or the test itself)"]
        return None

sys.meta_path.insert(0, Spy())

def report():
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps({{"loaded": loaded, "first": {{m: FIRST.get(m, []) for m in loaded}}}}))
"""


def heavy_imports(
    body: str, env: dict[str, str], heavy: tuple[str, ...] = HEAVY
) -> dict[str, list[str]]:
    """Run ``body`` in a fresh interpreter behind the spy; heavy package -> where it came from."""
    code = SPY.format(heavy=heavy) + textwrap.dedent(body) + "\nreport()\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return {m: found["first"][m] for m in found["loaded"]}


def explain(found: dict[str, list[str]]) -> str:
    return "heavy modules imported:\n" + "\n".join(
        f"- {module}, first imported via:\n    " + "\n    ".join(frames)
        for module, frames in found.items()
    )


def platform_env(home: Path) -> dict[str, str]:
    """A temp platform home and its own Dagster instance (as `mlplatform ui` exports it)."""
    return {"MLPLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def test_defining_assets_imports_no_heavy_library(tmp_path: Path) -> None:
    # the example projects (sklearn candidates, a torch candidate with a search) under a temp home;
    # not even pandas, numpy or pyarrow: the runs that compute import them; nor SQLAlchemy and
    # Alembic: opening an instance does
    found = heavy_imports(
        "import mlplatform.definitions\n", platform_env(tmp_path / "home"), HEAVY + DATA + STORAGE
    )
    assert not found, explain(found)


@pytest.mark.dagster  # materializes raw and features in a fresh interpreter
def test_raw_and_features_run_imports_no_heavy_library(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    projects.mkdir()
    spec_file = projects / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(variant("binary", "tiny"), sort_keys=False))
    home = tmp_path / "home"
    spec = load_spec(spec_file)
    files = generate_example(spec.landing_dir(home), months=2, rows_per_month=200, seed=7)
    body = f"""
        import dagster as dg
        from mlplatform.defs.build import build_defs, data_job_name
        from mlplatform.settings import load_settings
        from mlplatform.spec import load_spec

        settings = load_settings(home={str(home)!r}, projects_dir={str(projects)!r})
        spec = load_spec(settings.projects_dir / "tiny.yaml")
        defs = build_defs(settings, [spec])
        with dg.DagsterInstance.ephemeral() as instance:
            for key in {[f.stem for f in files]!r}:  # the second one has a drift reference
                result = defs.resolve_job_def(data_job_name("tiny")).execute_in_process(
                    partition_key=key, instance=instance, raise_on_error=False
                )
                assert result.success, key
                done = {{
                    e.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()
                }}
                assert done == {{"tiny/raw", "tiny/features"}}, done
        """
    found = heavy_imports(body, platform_env(home))
    assert not found, explain(found)
    assert (home / "assets" / "tiny" / "features" / f"{files[-1].stem}.parquet").is_file()

"""Shared setup of the benchmarks: sizes, a temp workspace with the bench spec, landing data,
quiet libraries and output helpers (a plain table, then one JSON line)."""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlplatform.cli import quiet_libraries
from mlplatform.examples.generate import generate_example
from mlplatform.settings import EXAMPLES_DIR, Settings, load_settings
from mlplatform.spec import ProjectSpec, load_spec

PROJECT = "benchchurn"
SEED = 7
# Lighter than the example's candidates so the full size fits in minutes on 2 cores; the bare
# baseline and the platform always train exactly these. ``max_samples`` also bounds the ONNX
# export: skl2onnx reads the forest's ``estimators_samples_``, which redraws every tree's
# bootstrap indices (cost ~ rows x trees).
CANDIDATES: list[dict[str, Any]] = [
    {
        "name": "logreg",
        "estimator": "logistic_regression",
        "params": {"C": 0.5, "max_iter": 200, "class_weight": "balanced"},
    },
    {
        "name": "forest",
        "estimator": "random_forest_classifier",
        "params": {
            "n_estimators": 20,
            "max_depth": 8,
            "min_samples_leaf": 50,
            "max_samples": 0.2,
            "class_weight": "balanced",
            "n_jobs": 1,
        },
    },
]


@dataclass(frozen=True)
class Size:
    months: int
    rows: int
    window: int

    @property
    def cutoffs(self) -> int:
        return max(0, self.months - self.window)


FULL = Size(months=36, rows=50_000, window=12)
QUICK = Size(months=6, rows=500, window=3)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: 6 months x 500 rows, window 3"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    return parser.parse_args()


def quiet() -> None:
    """The CLI's library silencing, plus the warnings sklearn and friends print per fit."""
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    quiet_libraries()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")
    # Dagster API notices from tick_landing_sensor and event-log reads
    warnings.filterwarnings("ignore", message="Starting in dagster 1.11, get_sensor_def")
    warnings.filterwarnings("ignore", message="Use fetch_materializations instead")
    # per-slice metrics on small holdouts (as pytest's filterwarnings in pyproject.toml)
    warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
    warnings.filterwarnings("ignore", message="No positive class found in y_true")


def compiled_package() -> None:
    """Byte-compile the mlplatform package, as installing it does (pip compiles a wheel's
    modules), before timing whole processes: a checkout run under PYTHONDONTWRITEBYTECODE
    (or from a read-only tree) otherwise compiles ~90 modules from source at every start,
    ~0.1 s that a user of the installed package never pays."""
    import compileall

    import mlplatform

    compileall.compile_dir(str(Path(mlplatform.__file__).parent), quiet=1)


def warm_imports() -> None:
    """Import what both sides import lazily (MLflow, ONNX, plotting) before any timing."""
    import matplotlib.pyplot  # noqa: F401
    import mlflow.pyfunc  # noqa: F401
    import onnxruntime  # noqa: F401

    import mlplatform.bundles.build
    import mlplatform.steps.report  # noqa: F401


def spec_dict(size: Size) -> dict[str, Any]:
    """The example churn spec renamed to ``benchchurn`` with the bench window and candidates."""
    d = copy.deepcopy(yaml.safe_load((EXAMPLES_DIR / "churn.yaml").read_text(encoding="utf-8")))
    d["name"] = PROJECT
    d["description"] = "Benchmark copy of the churn example."
    d["data"]["landing"] = "{home}/landing/" + PROJECT
    d["training"]["window"] = size.window
    d["candidates"] = copy.deepcopy(CANDIDATES)
    return d


def candidates_text(spec: ProjectSpec) -> str:
    return "; ".join(
        f"{c.name}={c.estimator}({', '.join(f'{k}={v}' for k, v in c.params.items())})"
        for c in spec.candidates
    )


@contextmanager
def work_dir(keep: Path | None) -> Iterator[Path]:
    """A fresh temp folder, removed afterwards unless ``--keep`` names where to keep it."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="mlplatform-bench-", dir=keep))
        yield root
        print(f"kept work dir {root}", file=sys.stderr)
        return
    root = Path(tempfile.mkdtemp(prefix="mlplatform-bench-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make_home(root: Path, name: str, size: Size) -> tuple[Settings, ProjectSpec]:
    """``root/name/home`` (MLPLATFORM_HOME) and ``root/name/projects/benchchurn.yaml``."""
    base = root / name
    projects = base / "projects"
    projects.mkdir(parents=True)
    path = projects / f"{PROJECT}.yaml"
    path.write_text(yaml.safe_dump(spec_dict(size), sort_keys=False), encoding="utf-8")
    settings = load_settings(home=base / "home", projects_dir=projects)
    settings.home.mkdir(parents=True)
    return settings, load_spec(path)


def generate(spec: ProjectSpec, folder: Path, months: int, rows: int) -> list[Path]:
    """Seeded landing files of the example generator, one CSV per month."""
    return generate_example(
        folder, start=spec.partitions.start, months=months, rows_per_month=rows, seed=SEED
    )


def land(files: Sequence[Path], spec: ProjectSpec, settings: Settings) -> list[Path]:
    """Copy landing files into the project's landing folder (as an upstream system would)."""
    landing = spec.landing_dir(settings.home)
    landing.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, landing / f.name)) for f in files]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str], source: Sequence[object] | None) -> str:
        out = []
        for i, text in enumerate(row):
            numeric = source is not None and isinstance(source[i], int | float)
            out.append(text.rjust(widths[i]) if numeric else text.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [line(cells[0], None), "  ".join("-" * w for w in widths)]
    lines += [line(c, r) for c, r in zip(cells[1:], rows, strict=True)]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def emit(result: dict[str, object]) -> None:
    """The machine-readable result: exactly one JSON object, the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)

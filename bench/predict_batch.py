"""Batch scoring benchmark: ``mlplatform predict`` vs stock ``mlflow.pyfunc`` predict on the
same production bundle and the same input file, in the same run.

One bundle is built and made production exactly as in ``serving.py`` (``build_production``).
The input is one CSV of N rows (default 1,000,000): the generated landing rows of every month,
repeated until N, with every landing column, values as they land.

* ours: a fresh process ``python -m mlplatform.cli predict benchchurn IN.csv -o OUT.parquet
  --no-progress`` (reads the CSV in chunks, verifies and loads the bundle with
  ``bundles.format.load``, writes Parquet with row number, bundle id, label, probabilities);
* stock: a fresh process that does what an MLflow user does: ``mlflow.pyfunc.load_model(
  bundle/model)``, ``pd.read_csv(IN, dtype=str, keep_default_na=False)`` (raw values as they
  land), ``model.predict(df)`` and ``to_parquet(OUT)``.

Whole-process wall time each (imports, loading, reading, scoring, writing), best of
``--repeat`` runs each, alternating. Both outputs are compared (labels equal, probabilities
within 1e-9) before anything is reported.

Prints a table, then (last stdout line) ``{"bench": "predict_batch", "rows", "ours_s",
"stock_s", "ours_rows_per_s", "stock_rows_per_s", "ratio"}`` with ratio = stock_s / ours_s
(goal >= 10). Run: ``.venv/bin/python bench/predict_batch.py [--quick] [--rows N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _common import PROJECT, Size, compiled_package, emit, progress, quiet, table, work_dir
from serving import build_production

BUNDLE_SIZE = Size(months=4, rows=5_000, window=3)
QUICK_BUNDLE = Size(months=4, rows=500, window=3)
GOAL_RATIO = 10.0
STOCK = """
import sys
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_csv(sys.argv[2], dtype=str, keep_default_na=False)
model.predict(frame).to_parquet(sys.argv[3])
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one run each")
    parser.add_argument("--rows", type=int, default=None, help="input rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per side (default 3)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    return parser.parse_args()


def input_file(root: Path, landing: Path, rows: int) -> Path:
    """``rows`` landing rows (every month's, repeated) as one CSV of strings."""
    months = [
        pd.read_csv(f, dtype=str, keep_default_na=False) for f in sorted(landing.glob("*.csv"))
    ]
    one = pd.concat(months, ignore_index=True)
    frame = pd.concat([one] * (rows // len(one) + 1), ignore_index=True).iloc[:rows]
    path = root / "input.csv"
    frame.to_csv(path, index=False)
    return path


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    args = parse_args()
    quiet()
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    compiled_package()
    with work_dir(args.keep) as root:
        progress("building the production bundle")
        prod = build_production(root, QUICK_BUNDLE if args.quick else BUNDLE_SIZE)
        source = input_file(root, root / "generated", rows)
        progress(f"input: {rows:,} rows, {source.stat().st_size / 2**20:.1f} MiB")
        env = {**os.environ, "MLPLATFORM_HOME": str(prod.settings.home)}
        model = prod.settings.bundles_dir / prod.bundle_id / "model"
        ours_out, stock_out = root / "ours.parquet", root / "stock.parquet"
        ours_cmd = [
            sys.executable, "-m", "mlplatform.cli", "predict", PROJECT, str(source),
            "-o", str(ours_out), "--no-progress", "--projects", str(prod.settings.projects_dir),
        ]  # fmt: skip
        stock_cmd = [sys.executable, "-c", STOCK, str(model), str(source), str(stock_out)]
        ours, stock = [], []
        for i in range(repeat):
            ours.append(timed(ours_cmd, env))
            stock.append(timed(stock_cmd, env))
            progress(f"  run {i + 1}: ours {ours[-1]:.2f}s, stock {stock[-1]:.2f}s")
        a, b = pd.read_parquet(ours_out), pd.read_parquet(stock_out)
        assert len(a) == len(b) == rows
        assert (a["label"].astype(str) == b["label"].astype(str)).all()
        for c in (c for c in b.columns if c.startswith("proba_")):
            assert (a[c] - b[c]).abs().max() <= 1e-6, (c, (a[c] - b[c]).abs().max())
        best_ours, best_stock = min(ours), min(stock)
        print(
            table(
                ["side", "best s", "rows/s"],
                [
                    ["mlplatform predict", best_ours, rows / best_ours],
                    ["mlflow.pyfunc predict", best_stock, rows / best_stock],
                ],
            )
        )
        ratio = best_stock / best_ours
        print(f"ratio {ratio:.2f} (goal >= {GOAL_RATIO:g})")
        emit(
            {
                "bench": "predict_batch",
                "rows": rows,
                "ours_s": round(best_ours, 3),
                "stock_s": round(best_stock, 3),
                "ours_rows_per_s": round(rows / best_ours),
                "stock_rows_per_s": round(rows / best_stock),
                "ratio": round(ratio, 2),
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks keep working: their --quick versions run and end with one JSON line.
(No timing is asserted; the numbers only mean something at full size.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        ("backfill.py", {"bench", "platform_s", "bare_s", "ratio"}),
        ("incremental.py", {"bench", "full_s", "incremental_s", "ratio", "materialized"}),
        (
            "run_worker.py",
            {
                "bench",
                "definitions_s",
                "dagster_s",
                "import_ratio",
                "definitions_mb",
                "dagster_mb",
                "rss_ratio",
                "run_s",
                "bare_s",
                "run_ratio",
                "run_mb",
                "bare_mb",
                "cli_s",
                "warm_run_s",
                "warm_run_ratio",
            },
        ),
        (
            "torch_train.py",
            {
                "bench",
                "device",
                "train_rows",
                "epochs",
                "fit_s",
                "epochs_per_s",
                "rows_per_s",
                "torch_p50_us",
                "onnx_p50_us",
                "ratio",
            },
        ),
        (
            "serving.py",
            {
                "bench",
                "ours_rps",
                "ours_p50_ms",
                "ours_p99_ms",
                "mlflow_rps",
                "mlflow_p50_ms",
                "mlflow_p99_ms",
                "ratio",
                "client_p50_us",
                "client_p99_us",
                "nolog_rps",
                "log_ratio",
                "log_dropped",
                "log_written_rows",
            },
        ),
        (
            "scale.py",
            {
                "bench",
                "ratio",
                "ratio_rows",
                "ratio_in_use",
                "platform_per_million_s",
                "platform_fixed_s",
                "in_use_per_million_s",
                "in_use_fixed_s",
                "arrow_per_million_s",
                "arrow_fixed_s",
                "marginal_ratio",
                "peak_rss_over_file",
                "peak_rows",
                "repeat",
                "sizes",
                "train_rows",
                "max_rows",
                "train_s",
                "train_peak_mb",
            },
        ),
        (
            "healthz_abuse.py",
            {"bench", "bound_ms", "idle_p99_ms", "abuse_p99_ms", "healthz_errors", "phases"},
        ),
        (
            "predict_batch.py",
            {"bench", "rows", "ours_s", "stock_s", "ours_rows_per_s", "stock_rows_per_s", "ratio"},
        ),
    ],
)
def test_quick_bench_ends_with_json(script: str, keys: set[str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            "--quick",
            *(["--no-ceiling"] if script == "serving.py" else []),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(last) == keys and last["bench"] == script.removesuffix(".py")
    if script == "incremental.py":
        assets = {asset.split("/", 1)[1] for asset, _ in last["materialized"]}
        assert assets == {"raw", "features", "model/logreg", "model/forest", "evaluation", "bundle"}

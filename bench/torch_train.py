"""Torch candidate: training throughput, and the exported bundle's single-row latency.

Trains the torch MLP candidate on the example's training window (the first ``window`` months
before the first cutoff) with a fixed number of epochs (early stopping off, so every run does
the same work), then exports it to the bundle's ONNX graph and times one-row predictions:

- **baseline**: eager torch, ``TorchModel.predict`` on a one-row DataFrame (preprocessing in
  numpy, network in torch, no grad);
- **ours**: the bundle's ONNX graph (preprocessing + network in one graph) in onnxruntime,
  fed exactly as the serving app feeds it.

``ratio`` = eager torch p50 / ONNX p50 (above 1: the bundle is faster). Last stdout line is one
JSON object ``{"bench": "torch_train", ...}``; progress goes to stderr.

    .venv/bin/python bench/torch_train.py [--quick] [--epochs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pandas as pd
from _common import (
    FULL,
    QUICK,
    Size,
    emit,
    generate,
    make_home,
    progress,
    quiet,
    table,
    work_dir,
)

from mlplatform.bundles.build import onnx_predict
from mlplatform.spec import Candidate, ProjectSpec
from mlplatform.steps import candidates, ingest, split
from mlplatform.steps.features import build_features
from mlplatform.steps.model_types import EpochLog

REPEATS = 300  # timed single-row predictions per side (after 20 warm-up calls)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size: 6 months x 500 rows")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 8; quick 2)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    return parser.parse_args()


def torch_candidate(epochs: int) -> Candidate:
    """The torch MLP with the spec defaults, a fixed epoch count and no early stop."""
    return Candidate(
        name="mlp",
        kind="torch",
        params={"max_epochs": epochs, "patience": epochs + 1, "device": "auto"},
    )


def training_window(spec: ProjectSpec, home: Path, files: list[Path], size: Size) -> pd.DataFrame:
    """Features of the first ``window`` months, parsed and built by the platform's steps."""
    parts: dict[str, pd.DataFrame] = {}
    for path in sorted(files)[: size.window]:
        key = path.stem
        typed, quality = ingest.parse_partition(ingest.read_landing_file(path, spec), spec, path)
        if not quality.passed:
            raise SystemExit(f"{path}: fails its quality checks: {quality.problems}")
        parts[key] = build_features(typed, spec)
    return split.training_frame(parts)


def p50_us(fn: object, repeats: int) -> tuple[float, float]:
    """Median and p99 of ``fn()`` in microseconds."""
    for _ in range(20):
        fn()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def main() -> None:
    args = parse_args()
    quiet()
    size = QUICK if args.quick else FULL
    epochs = args.epochs or (2 if args.quick else 8)
    with work_dir(args.keep) as root:
        settings, spec = make_home(root, "torch", size)
        progress(f"generating {size.window} months x {size.rows:,} rows")
        files = generate(spec, root / "landing", size.window, size.rows)
        train = training_window(spec, settings.home, files, size)
        cand = torch_candidate(epochs)
        logs: list[EpochLog] = []

        def on_epoch(log: EpochLog) -> None:
            logs.append(log)
            progress(
                f"  epoch {log.epoch}: train_loss {log.train_loss:.4f} "
                f"val_loss {log.val_loss:.4f} ({log.seconds:.1f} s)"
            )

        progress(f"training {cand.label} on {len(train):,} rows for {epochs} epochs")
        started = time.perf_counter()
        model = candidates.fit(train, spec, cand, on_epoch=on_epoch)
        fit_s = time.perf_counter() - started
        epoch_s = sum(log.seconds for log in logs) or fit_s
        fit_rows = round(len(train) * (1 - cand.torch_params().validation_fraction))

        session = ort.InferenceSession(
            model.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"]
        )
        row = train.iloc[:1]
        onnx_p50, onnx_p99 = p50_us(lambda: onnx_predict(session, row, spec), REPEATS)
        eager_p50, eager_p99 = p50_us(lambda: model.predict(row), REPEATS)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"torch {torch.__version__} on {device}, {len(train):,} window rows "
        f"({fit_rows:,} fit + validation), {len(logs)} epochs; training runs on 1 thread "
        f"(deterministic), inference on {torch.get_num_threads()}"
    )
    print(
        table(
            ["measure", "value"],
            [
                ["fit wall time (s)", round(fit_s, 2)],
                ["epochs/s", round(len(logs) / epoch_s, 3)],
                ["rows/s (fit rows x epochs / epoch time)", round(fit_rows * len(logs) / epoch_s)],
                ["single row, eager torch p50 (us)", round(eager_p50, 1)],
                ["single row, eager torch p99 (us)", round(eager_p99, 1)],
                ["single row, bundle ONNX p50 (us)", round(onnx_p50, 1)],
                ["single row, bundle ONNX p99 (us)", round(onnx_p99, 1)],
            ],
        )
    )
    emit(
        {
            "bench": "torch_train",
            "device": device,
            "train_rows": len(train),
            "epochs": len(logs),
            "fit_s": round(fit_s, 3),
            "epochs_per_s": round(len(logs) / epoch_s, 4),
            "rows_per_s": round(fit_rows * len(logs) / epoch_s, 1),
            "torch_p50_us": round(eager_p50, 1),
            "onnx_p50_us": round(onnx_p50, 1),
            "ratio": round(eager_p50 / onnx_p50, 2),
        }
    )


if __name__ == "__main__":
    sys.exit(main())

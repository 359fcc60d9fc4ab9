"""``mlplatform predict``: a real CLI process scores a landing file; its output equals the
serving API's predictions row by row, and the path imports no dagster, sklearn, torch, mlflow
or sqlalchemy."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import READER, Server

pytestmark = pytest.mark.e2e

HEAVY = ("dagster", "sklearn", "torch", "mlflow", "sqlalchemy")
# runs the CLI in this interpreter, then reports which heavy modules it imported
PROBE = (
    "import json, sys\n"
    "from mlplatform.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    "sys.exit(code)\n"
)


def landing_file(built: Built) -> Path:
    return sorted((built.projects_dir.parent / "landing").glob("*.csv"))[-1]


def predict_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    settings = server.env.settings
    env = {**os.environ, "MLPLATFORM_HOME": str(settings.home)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            "predict",
            PROJECT,
            *args,
            "--projects",
            str(settings.projects_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def served(server: Server, rows: list[dict[str, str]]) -> dict:
    with server.http(READER) as h:
        r = h.post(f"/v1/projects/{PROJECT}/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    return r.json()


def test_predict_output_equals_the_serving_api_row_by_row(
    server: Server, built: Built, tmp_path: Path
) -> None:
    source = landing_file(built)
    out = tmp_path / "scored.parquet"
    done = predict_cli(server, str(source), "-o", str(out), "--chunk-rows", "64")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no heavy import
    assert "row(s) scored by" in done.stderr
    with source.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = pd.read_parquet(out)
    api = served(server, rows)
    assert len(got) == len(rows) == len(api["predictions"])
    assert got["row"].tolist() == list(range(len(rows)))
    assert set(got["bundle_id"].astype(str)) == {api["bundle_id"]}
    for i, expected in enumerate(api["predictions"]):
        assert got["label"][i] == expected["label"], i
        for cls, p in expected["probabilities"].items():
            assert got[f"proba_{cls}"][i] == pytest.approx(p, abs=1e-9), (i, cls)


def test_predict_csv_output_with_an_older_bundle(
    server: Server, built: Built, tmp_path: Path
) -> None:
    source = landing_file(built)
    out = tmp_path / "scored.csv"
    older = server.env.ids["b"]
    done = predict_cli(server, str(source), "-o", str(out), "--bundle", older[:10])
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(out)
    assert set(got["bundle_id"]) == {older}
    assert len(got) == len(pd.read_csv(source))

    parquet = tmp_path / "input.parquet"  # the same rows as Parquet give the same predictions
    pd.read_csv(source, dtype=str, keep_default_na=False).to_parquet(parquet)
    done = predict_cli(server, str(parquet), "-o", str(tmp_path / "p.parquet"), "--bundle", older)
    assert done.returncode == 0, done.stderr
    again = pd.read_parquet(tmp_path / "p.parquet")
    assert again["label"].tolist() == got["label"].tolist()
    for column in (c for c in got.columns if c.startswith("proba_")):
        assert again[column].tolist() == pytest.approx(got[column].tolist(), abs=1e-12)


def test_predict_refuses_bad_input_with_one_line_naming_the_file(
    server: Server, built: Built, tmp_path: Path
) -> None:
    source = landing_file(built)
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    missing = tmp_path / "missing.csv"
    frame.drop(columns=["tenure_months"]).to_csv(missing, index=False)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"before")
    done = predict_cli(server, str(missing), "-o", str(out))
    assert done.returncode == 1
    assert "missing.csv: missing column(s) 'tenure_months'" in done.stderr
    assert out.read_bytes() == b"before"  # a failed run leaves the output as it was

    ragged = tmp_path / "ragged.csv"
    lines = source.read_text().splitlines()
    lines[5] += ",extra"
    ragged.write_text("\n".join(lines) + "\n")
    done = predict_cli(server, str(ragged), "-o", str(out))
    assert done.returncode == 1
    assert "ragged.csv: line 6 has" in done.stderr, done.stderr
    assert out.read_bytes() == b"before"
    assert list(tmp_path.glob(".out.parquet.*")) == []  # no temporary file left behind

    done = predict_cli(server, str(source), "-o", str(tmp_path / "out.json"))
    assert done.returncode == 1
    assert "unknown output format '.json'" in done.stderr

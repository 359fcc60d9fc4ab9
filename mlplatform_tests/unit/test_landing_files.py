"""Landing files are files: a size limit judged from ``stat``, regular files only, links kept
inside the landing folder, and names printed on one line whatever they contain."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mlplatform.cli import app
from mlplatform.examples.generate import generate_example
from mlplatform.landing import shown
from mlplatform.spec import ProjectSpec, SpecError, load_spec
from mlplatform.steps import ingest
from mlplatform.steps.ingest import DataError, read_landing_file
from mlplatform.steps.preview import check_file
from mlplatform_tests.projects import variant

pytestmark = pytest.mark.unit

GB = 1 << 30
ROOT = Path(__file__).resolve().parents[2]  # the checkout whose mlplatform the child imports


def project(tmp_path: Path, months: int = 2, rows: int = 60, **data: Any) -> ProjectSpec:
    d = variant("binary", "proj")
    d["data"]["landing"] = str(tmp_path / "landing")
    d["data"].update(data)
    d["quality"]["min_rows"] = 10
    path = tmp_path / "proj.yaml"
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    generate_example(tmp_path / "landing", months=months, rows_per_month=rows, seed=3)
    return load_spec(path)


def validate_data(tmp_path: Path) -> Any:
    return CliRunner().invoke(
        app, ["validate", "--data", "--home", str(tmp_path), str(tmp_path / "proj.yaml")]
    )


def refusal(path: Path, spec: ProjectSpec) -> DataError:
    with pytest.raises(DataError) as caught:
        read_landing_file(path, spec)
    return caught.value


def within(seconds: float, work: Callable[[], object]) -> object:
    """``work()``'s result, or a test failure if it is still running after ``seconds`` (a
    blocked open of a pipe would never return)."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # handed to the test thread
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return box[0]


# A child process, memory-capped so that reading the whole file would fail with MemoryError
# instead of taking the machine's memory: prints the refusal and the child's peak RSS in KiB.
SPARSE_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from pathlib import Path
from mlplatform.spec import load_spec
from mlplatform.steps.ingest import DataError, read_landing_file
try:
    read_landing_file(Path(sys.argv[2]), load_spec(Path(sys.argv[1])))
    print("read")
except DataError as exc:
    print(exc)
except MemoryError:
    print("MemoryError")
# VmHWM is this process image's own peak; ru_maxrss would carry the forking parent's
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def test_a_sparse_gigabyte_file_is_refused_from_its_size_before_reading(tmp_path: Path) -> None:
    project(tmp_path)
    big = tmp_path / "landing" / "2023-02-01.csv"
    with big.open("r+b") as fh:  # a valid header and rows, then a hole up to 1 GiB
        fh.truncate(GB)
    done = subprocess.run(
        [sys.executable, "-c", SPARSE_CHILD, str(tmp_path / "proj.yaml"), str(big)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    message, peak_kib = done.stdout.splitlines()
    assert message == (
        f"{big}: 1,073,741,824 bytes (1024.0 MB), above this project's limit "
        "data.max_file_mb=256; split the file, or raise data.max_file_mb in the spec"
    )
    assert int(peak_kib) < 1 << 20  # far below the gigabyte a read would take

    result = validate_data(tmp_path)
    assert result.exit_code == 1
    assert f"{big}: 1,073,741,824 bytes (1024.0 MB), above this project's limit" in result.output


def test_a_raised_limit_admits_the_file_and_changes_no_code_version(tmp_path: Path) -> None:
    spec = project(tmp_path, rows=30_000, max_file_mb=1)
    path = tmp_path / "landing" / "2023-01-01.csv"
    assert path.stat().st_size > 1 << 20
    assert "data.max_file_mb=1;" in refusal(path, spec).reason
    assert check_file(path, spec).problems[0].startswith(f"{path}: ")
    raised = spec.model_copy(update={"data": spec.data.model_copy(update={"max_file_mb": 8})})
    assert len(read_landing_file(path, raised)) == 30_000
    assert raised.section("data") == spec.section("data")  # nothing built becomes stale


def test_links_may_not_leave_the_landing_folder(tmp_path: Path) -> None:
    spec = project(tmp_path, months=3)
    landing = tmp_path / "landing"
    outside = tmp_path / "elsewhere" / "copy.csv"
    outside.parent.mkdir()
    os.replace(landing / "2023-02-01.csv", outside)  # a valid file, but not in the folder
    (landing / "2023-02-01.csv").symlink_to(outside)
    (landing / "2023-03-01.csv").unlink()
    (landing / "2023-03-01.csv").symlink_to("/etc/passwd")
    (landing / "archive").mkdir()  # a link into a folder below the landing folder is followed
    os.replace(landing / "2023-01-01.csv", landing / "archive" / "january.csv")
    (landing / "2023-01-01.csv").symlink_to(Path("archive") / "january.csv")

    passwd = refusal(landing / "2023-03-01.csv", spec)
    assert passwd.reason == (
        f"a symbolic link to /etc/passwd, outside the landing folder {landing.resolve()}; "
        "copy the file into the landing folder instead of linking to it"
    )
    assert "outside the landing folder" in refusal(landing / "2023-02-01.csv", spec).reason
    assert len(read_landing_file(landing / "2023-01-01.csv", spec)) == 60  # inside: read

    result = validate_data(tmp_path)
    assert result.exit_code == 1
    assert f"{landing / '2023-03-01.csv'}: a symbolic link to /etc/passwd, outside" in (
        result.output
    )
    assert "root:" not in result.output


@pytest.fixture
def pipe_and_socket(tmp_path: Path) -> Iterator[tuple[ProjectSpec, Path, Path]]:
    spec = project(tmp_path)
    landing = tmp_path / "landing"
    fifo, sock_path = landing / "2023-01-01.csv", landing / "2023-02-01.csv"
    fifo.unlink()
    os.mkfifo(fifo)
    sock_path.unlink()
    cwd = os.getcwd()
    os.chdir(landing)  # a socket path is limited to ~100 bytes: bind by its name
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(sock_path.name)
    finally:
        os.chdir(cwd)
    try:
        yield spec, fifo, sock_path
    finally:
        sock.close()


def test_pipes_and_sockets_are_refused_without_blocking(
    tmp_path: Path, pipe_and_socket: tuple[ProjectSpec, Path, Path]
) -> None:
    spec, fifo, sock = pipe_and_socket
    for path, kind in ((fifo, "a named pipe (FIFO)"), (sock, "a socket")):
        error = within(30, lambda p=path: refusal(p, spec))
        assert isinstance(error, DataError)
        assert error.reason == (
            f"{kind}, not a regular file; only regular files are read from the landing folder"
        )
    result = within(60, lambda: validate_data(tmp_path))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert f"{fifo}: a named pipe (FIFO), not a regular file" in output
    assert f"{sock}: a socket, not a regular file" in output


def test_control_characters_in_names_are_escaped_in_cli_output(tmp_path: Path) -> None:
    project(tmp_path)
    landing = tmp_path / "landing"
    fake = "proj: 9 landing file(s), first 1000 rows each: ok"
    (landing / f"2023-03-01.csv\n{fake}").write_text("x\n")
    (landing / "evil\x1b[2Jname\t.csv").write_text("x\n")
    os.close(os.open(os.fsencode(landing) + b"/latin-\xe9.csv", os.O_CREAT | os.O_WRONLY))
    result = validate_data(tmp_path)
    lines = result.output.splitlines()
    assert fake not in lines and not any(line.startswith(fake) for line in lines)
    escaped = f"{landing}/2023-03-01.csv\\n{fake}: file name matches no partition key"
    assert any(line.startswith(escaped) for line in lines)
    assert f"{landing}/evil\\x1b[2Jname\\t.csv: file name matches no partition key" in (
        result.output
    )
    assert f"{landing}/latin-\\udce9.csv: file name matches no partition key" in result.output
    assert "\x1b" not in result.output

    for path in landing.glob("2023-0[12]-01.csv"):
        path.unlink()  # left: files that match no partition key
    args = ["materialize", "proj", "--home", str(tmp_path), "--projects", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"warning: {landing}/2023-03-01.csv\\n{fake} matches no partition key; ignored" in lines
    assert not any(line.startswith(fake) for line in lines) and "\x1b" not in result.output


def test_header_names_and_filename_templates_cannot_fake_a_line(tmp_path: Path) -> None:
    spec = project(tmp_path, months=1)
    path = tmp_path / "landing" / "2023-01-01.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["x\nfake: ok"] = "1"
    frame.to_csv(path, index=False)
    reason = refusal(path, spec).reason
    assert "x\\nfake: ok" in reason and "\n" not in reason
    problems = check_file(path, spec).problems
    assert problems and all("\n" not in p for p in problems)

    d = variant("binary", "proj")
    d["data"]["filename"] = "{partition}\n.csv"
    (tmp_path / "proj.yaml").write_text(yaml.safe_dump(d), encoding="utf-8")
    with pytest.raises(SpecError, match=r"data\.filename: must not contain control characters"):
        load_spec(tmp_path / "proj.yaml")


def test_shown_escapes_what_could_fake_or_reorder_a_line() -> None:
    assert shown("a\nb\r\tc\x00\x1b\x7f") == "a\\nb\\r\\tc\\x00\\x1b\\x7f"
    assert shown("x\u2028y\u202ez") == "x\\u2028y\\u202ez"
    assert shown(Path("/data/z\u00fcrich \u65e5\u672c.csv")) == "/data/z\u00fcrich \u65e5\u672c.csv"


def test_csv_blocks_and_row_chunks_split_anywhere_read_like_one_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = project(tmp_path, months=1)
    path = tmp_path / "landing" / "2023-01-01.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    cells = rows[3].split(",")
    cells[0] = '"C-Z\u00fcrich\r\nquoted, with a comma"'
    rows[3] = ",".join(cells)
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("utf-8"))
    whole = read_landing_file(path, spec)
    monkeypatch.setattr(ingest, "BLOCK", 3)  # splits CRLFs, quoted fields and characters
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 7)
    small = read_landing_file(path, spec)
    assert small.equals(whole) and list(small.index) == list(whole.index)
    assert small.iloc[3]["customer_id"] == "C-Z\u00fcrich\r\nquoted, with a comma"

    text = path.read_bytes()
    bad = text.index("\u00fc".encode()) + 1  # cut a two-byte character in half
    path.write_bytes(text[:bad] + b"\xff" + text[bad + 1 :])
    error = refusal(path, spec)
    assert error.reason.startswith(f"not valid utf-8 text at byte {bad - 1};")
    assert error.rows == "line 5"

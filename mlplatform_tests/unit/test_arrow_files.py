"""Files handed to Arrow are let go of before the process exits: a command that stops reading
early (bad input), or exits right after a read, exits with its own status, never with Arrow's
``terminate called without an active exception`` abort."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.columnar.arrow_files import CsvReader, arrow_buffer

pytestmark = pytest.mark.unit

# A file whose reads take a while: Arrow's read-ahead thread is still inside one when the
# script exits right after the first batch.
SCRIPT = textwrap.dedent(
    """
    import io, sys, time
    import pyarrow.csv as pacsv
    from mlplatform.columnar.arrow_files import CsvReader

    class Slow(io.RawIOBase):
        def __init__(self):
            self.data = io.BytesIO(b"a,b\\n" + b"1,x\\n" * 200_000)
        def readable(self):
            return True
        def readinto(self, buffer):
            time.sleep(0.2)
            return self.data.readinto(buffer)

    options = {"read_options": pacsv.ReadOptions(block_size=1 << 16)}
    if sys.argv[1] == "let-go":
        with CsvReader(io.BufferedReader(Slow(), 1 << 16), **options) as reader:
            next(iter(reader))
    else:
        reader = pacsv.open_csv(io.BufferedReader(Slow(), 1 << 16), **options)
        reader.read_next_batch()
        reader.close()
    print("stopped early", file=sys.stderr)
    sys.exit(3)
    """
)


def _exit_status(mode: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stderr


def test_a_reader_let_go_of_exits_with_the_commands_own_status() -> None:
    for _ in range(3):
        code, stderr = _exit_status("let-go")
        assert code == 3, stderr
        assert "terminate called" not in stderr


def test_a_bare_reader_closed_early_can_abort_the_process() -> None:
    """The hazard itself, so the test above is known to be able to fail."""
    outcomes = [_exit_status("bare")[0] for _ in range(3)]
    assert any(code not in (3, 0) for code in outcomes), outcomes


def test_batches_come_through_and_close_is_idempotent() -> None:
    text = b"a,b\n" + b"".join(b"%d,v%d\n" % (i, i) for i in range(10_000))
    reader = CsvReader(io.BytesIO(text))
    rows = sum(batch.num_rows for batch in reader)
    reader.close()
    reader.close()
    assert rows == 10_000
    assert reader.schema.names == ["a", "b"]
    assert list(reader) == []


def test_a_file_read_into_arrows_memory_is_whole_and_hashed(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB: several blocks
    path = tmp_path / "landing.bin"
    path.write_bytes(data)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        buffer = arrow_buffer(fh, len(data), digest)
    assert buffer.to_pybytes() == data
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    with path.open("rb") as fh:  # a file shorter than announced: what is there
        assert arrow_buffer(fh, len(data) + 100).size == len(data)


def test_reading_a_parquet_landing_file_then_exiting_exits_cleanly(tmp_path: Path) -> None:
    """``pyarrow.parquet.read_table`` over a Python file aborted one exit in six here."""
    table = pa.table({f"c{i}": np.arange(200_000, dtype=np.float64) for i in range(8)})
    path = tmp_path / "2024-01-01.parquet"
    pq.write_table(table, path, row_group_size=25_000)
    script = textwrap.dedent(
        f"""
        import hashlib, os, sys
        import pyarrow as pa, pyarrow.parquet as pq
        from mlplatform.columnar.arrow_files import arrow_buffer
        with open({str(path)!r}, "rb") as fh:
            data = arrow_buffer(fh, os.fstat(fh.fileno()).st_size, hashlib.sha256())
        assert pq.read_table(pa.BufferReader(data)).num_rows == 200_000
        sys.exit(3)
        """
    )
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 3, done.stderr

"""Arrow's CSV reader over a Python file is let go of before the process exits: a command that
stops reading early (bad input) exits with its own status, never with Arrow's ``terminate
called without an active exception`` abort from a read still in flight."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest

from mlplatform.columnar.arrow_csv import CsvReader

pytestmark = pytest.mark.unit

# A file whose reads take a while: Arrow's read-ahead thread is still inside one when the
# script exits right after the first batch.
SCRIPT = textwrap.dedent(
    """
    import io, sys, time
    import pyarrow.csv as pacsv
    from mlplatform.columnar.arrow_csv import CsvReader

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

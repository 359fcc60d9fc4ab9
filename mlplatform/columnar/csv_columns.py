"""Chosen columns of a CSV as a stream of Arrow text batches, with each row's file line.

The reader of ``csv_stream`` (same parse options, same line numbering by ``LineTap``) reading
only the columns asked for and keeping every row as it is: batch scoring scores a row whose
cells are all empty (as missing values) where ingest drops it. ``NotPlainError`` as there:
the caller reads the file with an exact reader instead.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mlplatform.columnar.arrow_files import CsvReader
from mlplatform.columnar.csv_stream import BLOCK, LineTap, NotPlainError, _options


def text_columns(
    fh: BinaryIO, encoding: str, delimiter: str, names: list[str], columns: Sequence[str]
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Batches of ``columns`` (text cells; ``names`` is the whole header) and the file line of
    each row. ``fh`` must be at the start of the file."""
    # LineTap also hashes what it reads (ingest records it); scoring has no use for the digest
    tap = LineTap(fh, hashlib.sha1(usedforsecurity=False), limit=1 << 62)
    stream = io.BufferedReader(tap, buffer_size=BLOCK)
    options = _options(encoding, delimiter, names)
    convert: pacsv.ConvertOptions = options["convert_options"]
    convert.include_columns = list(columns)
    try:
        with CsvReader(stream, **options) as reader:
            tap.take(1)  # the header's line
            for batch in reader:
                if batch.num_rows:
                    yield batch, tap.take(batch.num_rows)
        stream.read()
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise NotPlainError(str(exc)) from None
    if tap.left():  # more non-empty lines than rows: a line break inside a quoted value
        raise NotPlainError("line breaks inside values")

"""The streamed ingest reads one batch ahead in a thread: items keep their order, what the
producer raises is raised to the caller, and a caller that stops early leaves no thread
reading a file it is about to close."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mlplatform.columnar.csv_stream import NotPlainError, read_ahead


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "csv-read-ahead"]


def test_items_come_in_order() -> None:
    assert list(read_ahead(iter(range(100)))) == list(range(100))
    assert not _readers()


def test_what_the_producer_raises_is_raised_to_the_caller() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise NotPlainError("line breaks inside values")

    got = []
    with pytest.raises(NotPlainError, match="line breaks"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1]
    assert not _readers()


def test_a_caller_that_stops_early_stops_the_producer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    ahead = read_ahead(items())
    assert next(ahead) == 0
    ahead.close()
    assert not _readers()
    assert len(produced) <= 4  # the one taken, at most two waiting, one being put

"""A one-line progress bar on stderr (redrawn at most a few times a second)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Bar:
    """``label [#####.....]  45% 120,000 rows, 50,000 rows/s``: how far through the input
    (bytes of a CSV, rows of a Parquet file) and the rows scored."""

    def __init__(self, label: str, stream: TextIO = sys.stderr):
        self.label, self.stream = label, stream
        self.start = self._last = time.monotonic()

    def update(self, position: int, total: int, rows: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.25:
            return
        self._last = now
        share = 1.0 if final else min(1.0, position / max(total, 1))
        filled = int(share * 30)
        speed = rows / max(now - self.start, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} "
            f"{rows:,} rows, {speed:,.0f} rows/s"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()

"""Write a report file atomically."""

from __future__ import annotations

import os
import pathlib
import tempfile

REPORT_MODE = 0o640


def write_report(html: str, path: pathlib.Path) -> pathlib.Path:
    """Write the report atomically (temp file in the same folder, then os.replace)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        # mkstemp makes the file 0600: the serving app and reviewers may run as another user
        # of the platform's group
        os.chmod(tmp, REPORT_MODE)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path

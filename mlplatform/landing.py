"""Landing files are files: what may be read from a landing folder, and names safe to print.

A landing file is read only if it is a regular file of at most ``data.max_file_mb`` MB
(2^20 bytes) whose real path is inside the landing folder: a symbolic link to another file
of the folder (or of a folder below it) is followed, one leading out of it is refused, and so
are named pipes, devices, sockets and folders. Everything is judged from ``stat`` before a byte
is read, and the file is opened without following a last symbolic link and without blocking,
then judged again on the open descriptor (a file swapped in between is refused too).
"""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path
from typing import BinaryIO

MB = 1 << 20
# line and paragraph separators and bidirectional overrides can fake or reorder a line
_INVISIBLE = {"Cc", "Cs", "Zl", "Zp"}
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}


def shown(name: str | os.PathLike[str]) -> str:
    """A file name or path on one line: control characters, separators, bidirectional
    marks and undecodable bytes written as Python escapes (``\\n``, ``\\x1b``, ``\\udcff``)."""
    text = os.fspath(name)
    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(ch) in _INVISIBLE or ch in _BIDI
        else ch
        for ch in text
    )


class LandingRefusedError(Exception):
    """A landing file that is not read; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{shown(path)}: {reason}")


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _judge(path: Path, st: os.stat_result, max_mb: int) -> None:
    kind = _kind(st.st_mode)
    if kind is not None:
        raise LandingRefusedError(
            path, f"{kind}, not a regular file; only regular files are read from the landing folder"
        )
    if st.st_size > max_mb * MB:
        raise LandingRefusedError(
            path,
            f"{st.st_size:,} bytes ({st.st_size / MB:.1f} MB), above this project's limit "
            f"data.max_file_mb={max_mb}; split the file, or raise data.max_file_mb in the spec",
        )


def real_path(path: Path) -> Path:
    """The file a landing path names: itself, or where a symbolic link leads if that is inside
    the landing folder (the path's folder). Raises LandingRefusedError otherwise."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise LandingRefusedError(path, "landing file does not exist") from None
    except OSError as exc:
        raise LandingRefusedError(path, f"cannot be examined: {exc.strerror}") from None
    if not stat.S_ISLNK(st.st_mode):
        return path
    folder = path.parent.resolve()
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        raise LandingRefusedError(
            path, f"a symbolic link to {shown(os.readlink(path))}, which does not exist"
        ) from None
    except (RuntimeError, OSError) as exc:  # a loop of links
        raise LandingRefusedError(
            path, f"a symbolic link that cannot be followed ({exc})"
        ) from None
    if not target.is_relative_to(folder):
        raise LandingRefusedError(
            path,
            f"a symbolic link to {shown(target)}, outside the landing folder {shown(folder)}; "
            "copy the file into the landing folder instead of linking to it",
        )
    return target


def check_landing_file(path: Path, max_mb: int) -> os.stat_result:
    """The ``stat`` of a landing file that may be read (nothing is opened); raises
    LandingRefusedError with the reason otherwise."""
    target = real_path(path)
    try:
        st = os.stat(target)
    except OSError as exc:  # removed meanwhile, or not ours to see
        raise LandingRefusedError(path, f"cannot be examined: {exc.strerror}") from None
    _judge(path, st, max_mb)
    return st


def open_landing_file(path: Path, max_mb: int) -> BinaryIO:
    """A landing file opened for reading in binary, after check_landing_file and again on the
    open descriptor; raises LandingRefusedError."""
    check_landing_file(path, max_mb)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(real_path(path), flags)
    except OSError as exc:
        raise LandingRefusedError(path, f"cannot be opened: {exc.strerror}") from None
    try:
        _judge(path, os.fstat(fd), max_mb)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")

"""Durable, owner-only file writes: keys, the ledger head, the status file, configuration.

:func:`write_private` replaces a file so that a reader (or a power cut) sees either the
old content or the new one, never half a file, and so that the data is never readable
by anyone but the owner, not even for an instant: the temporary file is created with
the final mode in the same folder, written, fsynced, renamed over the target, and the
folder is fsynced so the rename itself survives a power cut. :func:`append_line` adds one
line to an owner-only journal and returns only once it is on disk; a fragment an
interrupted append left is cut first, so it never swallows the next line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("gate.files")


def fsync_dir(directory: Path) -> None:
    """Make a rename or a file creation in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data``, as a file of ``mode`` (default 0600).

    The new file always gets ``mode``, whatever the mode of the file it replaces. The
    parent folder must exist.
    """
    path = Path(path)
    # mkstemp creates the file 0600 and O_EXCL, so no other user ever sees the bytes.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if mode != 0o600:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _cut_to_a_line_end(fd: int) -> int:
    """Cut a last line left without its newline (an append a power cut or a full disk
    cut short) back to the line before; the bytes cut."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    keep = size
    while keep > 0:
        start = max(0, keep - 65536)
        newline = os.pread(fd, keep - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        keep = start
    os.ftruncate(fd, keep)
    return size - keep


def append_line(path: Path, line: bytes) -> None:
    """Append ``line`` to ``path`` (created 0600) in one write and fsync it; ``OSError``
    if it is not all on disk (a short write is an error: the caller decides what then).

    A fragment an interrupted append left at the end is cut first (and said at WARNING):
    glued to it, this line would be unreadable on every later start."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        cut = _cut_to_a_line_end(fd)
        if cut:
            log.warning("%s: cut %d bytes of a line an interrupted append left", path, cut)
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["append_line", "fsync_dir", "write_private"]

"""Durable, owner-only file writes: keys, the ledger head, the status file, configuration.

:func:`write_private` replaces a file so that a reader (or a power cut) sees either the
old content or the new one, never half a file, and so that the data is never readable
by anyone but the owner, not even for an instant: the temporary file is created with
the final mode in the same folder, written, fsynced, renamed over the target, and the
folder is fsynced so the rename itself survives a power cut. :func:`append_line` adds one
line to an owner-only journal and returns only once it is on disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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


def append_line(path: Path, line: bytes) -> None:
    """Append ``line`` to ``path`` (created 0600) in one write and fsync it; ``OSError``
    if it is not all on disk (a short write is an error: the caller decides what then)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["append_line", "fsync_dir", "write_private"]

"""Counts what the process writes to disk, so "no image on disk" is measured, not assumed.

A Python audit hook (PEP 578) sees every ``open`` for writing and every subprocess
start while it is active. Native code (OpenCV's writers, for one) bypasses the hook, so
``start`` also snapshots the watched folders and ``stop`` adds every file created or
changed there. ``image_files`` then inspects each written file for image data: JPEG or
PNG signatures, raw or base64-encoded, or a long high-entropy run such as a sealed
payload would leave.

The process's own standard output and error, when the shell redirected them to a file,
are not counted as written files: they are the operator's console, which the log tests
check for image data. Paths written are recorded as the process opens them, so
``outside`` can tell which of them lie outside the folders a run may write.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from gate_contract.paths import data_dir

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Raw JPEG and PNG signatures, and the same bytes as they start a base64 text.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"/9j/", b"iVBORw0KGgo")
_ENTROPY_WINDOW = 16 * 1024
_ENTROPY_STEP = 4 * 1024  # any run of 20 KiB or more contains a whole window
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".hypothesis", ".ruff_cache"}


def _snapshot(roots: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file under ``roots``, skipping tool caches."""
    seen: dict[str, tuple[int, int]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path, follow_symlinks=False)
                except OSError:
                    continue
                seen[os.path.abspath(path)] = (stat.st_mtime_ns, stat.st_size)
    return seen


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _console_files() -> set[tuple[int, int] | None]:
    """(device, inode) of regular files standard output and error are redirected to."""
    found: set[tuple[int, int] | None] = set()
    for fd in (1, 2):
        try:
            stat = os.fstat(fd)
        except OSError:
            continue
        if stat.st_mode & 0o170000 == 0o100000:  # S_IFREG
            found.add((stat.st_dev, stat.st_ino))
    found.discard(None)
    return found


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _entropy(block: bytes) -> float:
    counts = Counter(block)
    total = len(block)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def contains_image_data(data: bytes) -> bool:
    """True if ``data`` holds an image signature or a high-entropy (compressed/sealed) blob."""
    if any(sig in data for sig in _SIGNATURES):
        return True
    for start in range(0, max(len(data) - _ENTROPY_WINDOW + 1, 0), _ENTROPY_STEP):
        if _entropy(data[start : start + _ENTROPY_WINDOW]) > 7.5:
            return True
    return False


class WriteAudit:
    """Records written paths and subprocesses between ``start`` and ``stop``."""

    _installed: WriteAudit | None = None

    def __init__(self) -> None:
        self.written: set[str] = set()
        self.subprocesses: list[str] = []
        self._active = False
        self._lock = threading.Lock()
        self._roots: list[Path] = []
        self._before: dict[str, tuple[int, int]] = {}

    @classmethod
    def instance(cls) -> WriteAudit:
        """The process-wide auditor (audit hooks cannot be removed, so install one only)."""
        if cls._installed is None:
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        return cls._installed

    def _hook(self, event: str, args: tuple) -> None:
        if not self._active:
            return
        if event == "open" and len(args) >= 3 and _is_write(args[1], args[2]):
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                with self._lock:
                    self.written.add(os.path.abspath(os.fsdecode(path)))
        elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
            with self._lock:
                self.subprocesses.append(repr(args[:2]))

    def start(self, watch: Iterable[Path] | None = None) -> None:
        """Begin recording; ``watch`` defaults to the folders the appliance owns.

        Those are the data dir and the working directory. The shared temp dir is not
        watched by default: other processes write there, and the service runs with a
        private /tmp under systemd; Python-level writes anywhere are still seen by the hook.
        """
        if watch is None:
            watch = (data_dir(), Path.cwd())
        self._roots = [Path(p) for p in watch if Path(p).is_dir()]
        self._before = _snapshot(self._roots)
        with self._lock:
            self.written.clear()
            self.subprocesses.clear()
        self._active = True

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        after = _snapshot(self._roots)
        changed = {p for p, state in after.items() if self._before.get(p) != state}
        consoles = _console_files()
        changed = {p for p in changed if _file_id(p) not in consoles}
        with self._lock:
            self.written |= changed

    def outside(self, allowed: Iterable[Path]) -> list[str]:
        """Written paths that are not inside any of the ``allowed`` folders or files."""
        roots = [os.path.abspath(p) for p in allowed]
        return sorted(
            name
            for name in self.written
            if not any(name == root or name.startswith(root + os.sep) for root in roots)
        )

    def image_files(self) -> list[str]:
        """Written files that hold image data now."""
        found = []
        for name in sorted(self.written):
            path = Path(name)
            if path.is_file() and contains_image_data(path.read_bytes()):
                found.append(name)
        return found


__all__ = ["WriteAudit", "contains_image_data"]

"""Counts what the process writes to disk, so "no image on disk" is measured, not assumed.

A Python audit hook (PEP 578) sees every ``open`` for writing and every subprocess
start while it is active. ``image_files`` then inspects each written file for image
data: JPEG or PNG signatures anywhere in it, or a long high-entropy run such as a
sealed payload would leave.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections import Counter
from pathlib import Path

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_ENTROPY_WINDOW = 16 * 1024


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
    for start in range(0, max(len(data) - _ENTROPY_WINDOW + 1, 0), _ENTROPY_WINDOW):
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

    def start(self) -> None:
        with self._lock:
            self.written.clear()
            self.subprocesses.clear()
        self._active = True

    def stop(self) -> None:
        self._active = False

    def image_files(self) -> list[str]:
        """Written files that hold image data now."""
        found = []
        for name in sorted(self.written):
            path = Path(name)
            if path.is_file() and contains_image_data(path.read_bytes()):
                found.append(name)
        return found

"""One gate service per unit: an exclusive lock in the unit's state directory.

``gatectl run`` takes the lock before it touches anything (the serial port, the status
file), so a second instance fails with "the gate service (pid N) holds /dev/ttyACM0;
stop it first" instead of stealing the MCU's port and leaving a status that lies about
the one that serves. ``gatectl selftest`` and ``gatectl serial test`` ask the lock who
holds it before they open the port. The lock is ``flock(2)`` on ``[service] data_dir``'s
``gate-service.lock``: the kernel drops it when the process dies, so a crash leaves no
stale lock; the file only says who held it last (pid and serial port, as JSON).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from appliance.errors import InstanceLocked
from gate_contract.documents import parse_json


def _describe(holder: dict[str, Any], path: Path) -> str:
    pid = holder.get("pid", "?")
    port = holder.get("serial_port") or "the unit"
    return f"the gate service (pid {pid}) holds {port}; stop it first (lock {path})"


class InstanceLock:
    """Held for as long as the service runs; :meth:`close` releases it."""

    def __init__(self, path: Path, serial_port: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise InstanceLocked(_describe(holder, path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "serial_port": serial_port}).encode(), 0)
        self.path = path
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # releases the flock
            self._fd = None


def _read(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = parse_json(data) if data else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the service lock at ``path`` (``{"pid": ..., "serial_port": ...}``), or
    None when no running service does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def port_in_use_message(path: Path, port: str) -> str | None:
    """ "the gate service (pid N) holds PORT; stop it first" when the service at ``path``
    holds ``port`` (or holds the unit, port unknown); None when it is free."""
    holder = lock_holder(path)
    if holder is None:
        return None
    held = holder.get("serial_port")
    if held and os.path.realpath(held) != os.path.realpath(port):
        return None
    return _describe(holder, path)


__all__ = ["InstanceLock", "lock_holder", "port_in_use_message"]

"""Revoked device certificates, by certificate serial or by device id.

The file is JSON: ``{"serials": ["0x1a2b...", "123456"], "devices": ["gate-lax-0042"]}``
(serials in hex with ``0x`` or in decimal). It is re-read when its modification time
changes, so an operator revokes a unit without restarting the service. A file that
cannot be parsed keeps the last good list and is reported, never silently emptied.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path

from gate_contract.documents import parse_json
from matching_service.errors import RevocationError

log = logging.getLogger("gate.matcher.revocation")


def parse_serial(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(":", "")
        try:
            return int(text, 16) if text.startswith("0x") else int(text)
        except ValueError:
            pass
    raise RevocationError(f"not a certificate serial: {value!r}")


def parse_revocations(text: str) -> tuple[frozenset[int], frozenset[str]]:
    try:
        data = parse_json(text)
    except ValueError as exc:
        raise RevocationError(f"revocation list is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not set(data) <= {"serials", "devices"}:
        raise RevocationError('revocation list must be {"serials": [...], "devices": [...]}')
    serials, devices = data.get("serials", []), data.get("devices", [])
    if not isinstance(serials, list) or not isinstance(devices, list):
        raise RevocationError("serials and devices must be lists")
    if not all(isinstance(d, str) and d for d in devices):
        raise RevocationError("devices must be non-empty strings")
    return frozenset(parse_serial(s) for s in serials), frozenset(devices)


def add_to_file(path: Path, *, serial: int | None = None, device_id: str | None = None) -> None:
    """Add a serial and/or a device to the revocation list file (created if absent),
    atomically: a serving matcher re-reads it and never sees half a file."""
    import os
    import tempfile

    serials: frozenset[int] = frozenset()
    devices: frozenset[str] = frozenset()
    if path.exists():
        serials, devices = parse_revocations(path.read_text())
    if serial is not None:
        serials = serials | {serial}
    if device_id is not None:
        devices = devices | {device_id}
    text = json.dumps({"serials": [hex(s) for s in sorted(serials)], "devices": sorted(devices)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RevocationList:
    """Looks up revoked serials and device ids; reloads its file when it changes."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        serials: set[int] | frozenset[int] = frozenset(),
        devices: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self._path = path
        self._serials = frozenset(serials)
        self._devices = frozenset(devices)
        self._mtime: int | None = None
        self._lock = threading.Lock()
        if path is not None:
            self._load(strict=True)

    def _load(self, *, strict: bool) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime == self._mtime:
                return
            serials, devices = parse_revocations(self._path.read_text())
        except (OSError, RevocationError) as exc:
            if strict:
                raise RevocationError(f"{self._path}: {exc}") from exc
            log.error("revocation list %s not reloaded, keeping the last one: %s", self._path, exc)
            return
        self._serials, self._devices, self._mtime = serials, devices, mtime
        log.info("revocation list: %d serials, %d devices", len(serials), len(devices))

    def revoke(self, *, serial: int | None = None, device_id: str | None = None) -> None:
        """Revoke in memory (tests, or an operator API in front of the service)."""
        with self._lock:
            if serial is not None:
                self._serials = self._serials | {serial}
            if device_id is not None:
                self._devices = self._devices | {device_id}

    def is_revoked(self, serial: int, device_id: str) -> str | None:
        """Why this certificate is revoked (``"serial"`` or ``"device"``), or None."""
        with self._lock:
            if self._path is not None:
                self._load(strict=False)
            if serial in self._serials:
                return "serial"
            if device_id in self._devices:
                return "device"
        return None


__all__ = ["RevocationList", "add_to_file", "parse_revocations", "parse_serial"]

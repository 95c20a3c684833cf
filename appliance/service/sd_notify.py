"""Minimal sd_notify(3): tell systemd the gate is ready, alive, or stopping.

Uses ``systemd.daemon.notify`` when the optional ``systemd-python`` package (the
``device`` extra) imports; otherwise writes the datagram itself to ``NOTIFY_SOCKET``
(a path, or ``@name`` for the abstract namespace). Without ``NOTIFY_SOCKET`` (not run by
systemd, or not ``Type=notify``) every call is a no-op that returns False.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("gate.sd_notify")

try:  # pragma: no cover - depends on the device extra
    from systemd import daemon as _systemd_daemon
except ImportError:
    _systemd_daemon = None


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def _send(state: str) -> bool:
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target or not (target.startswith("/") or target.startswith("@")):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(target))
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", target, exc)
        return False


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``, ``WATCHDOG=1``, ``STATUS=...``); True if sent."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    if _systemd_daemon is not None:
        try:
            return bool(_systemd_daemon.notify(state))
        except Exception as exc:  # pragma: no cover - defensive, fall back to the socket
            log.warning("systemd.daemon.notify failed (%s); using the socket", exc)
    return _send(state)


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None if off."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


__all__ = ["notify", "watchdog_interval"]

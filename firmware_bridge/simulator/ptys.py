"""Pseudo-terminals as plain serial lines, for the simulator and the line tap."""

from __future__ import annotations

import contextlib
import os
import tty
from collections.abc import Iterable


def open_raw_pty() -> tuple[int, int, str]:
    """A pty pair as a plain 8-bit line (no echo, no line discipline): ``(master, slave,
    path)``, the master non-blocking. Keep the slave open, so bytes for a host that has not
    opened ``path`` yet wait in the pty, as in a UART's receive buffer."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def close_fds(fds: Iterable[int | None]) -> None:
    """Close each open descriptor, ignoring those already gone."""
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


__all__ = ["close_fds", "open_raw_pty"]

"""Where both programs keep their state on one machine, and the development PKI in it.

One root, ``GATE_DATA_DIR`` (systemd's ``StateDirectory`` on a device), defaulting to the
XDG data directory so a developer machine needs no root. Never holds images captured by
the camera: those live in memory only.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Root of the persistent state (keys, ledger, models, galleries)."""
    explicit = os.environ.get("GATE_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "gate-appliance"


def pki_dir() -> Path:
    """Development CA, device and service certificates and keys."""
    return data_dir() / "pki"


__all__ = ["data_dir", "pki_dir"]

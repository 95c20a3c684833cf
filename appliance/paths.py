"""Where the appliance keeps its state: models, keys, the purge ledger, demo assets.

One root, ``GATE_DATA_DIR`` (systemd's ``StateDirectory`` on a device), defaulting to
the XDG data directory so a developer machine needs no root. Never holds images
captured by the camera: those live in memory only.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Root of the appliance's persistent state."""
    explicit = os.environ.get("GATE_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "gate-appliance"


def models_dir() -> Path:
    return data_dir() / "models"


def demo_assets_dir() -> Path:
    """Document and live photos that packages ship, used by the demo and tests."""
    return data_dir() / "demo"


def pki_dir() -> Path:
    """Development CA, device and service certificates and keys."""
    return data_dir() / "pki"

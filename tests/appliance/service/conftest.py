"""Fixtures of the service's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gate_contract.files import write_private
from tests.support import REPO

EXAMPLE = REPO / "systemd" / "gate-appliance.toml.example"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example configuration, with a relay key file next to it."""
    path = tmp_path / "gate.toml"
    shutil.copy(EXAMPLE, path)
    write_private(tmp_path / "relay.key", ("00" * 24 + "\n").encode())
    return path

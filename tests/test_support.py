"""The shared test helpers write what they say (a wrong helper would let many tests
pass on configs nobody meant)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.support import unit_config


def test_unit_config_quotes_values_overrides_and_leaves_out_none(tmp_path: Path) -> None:
    odd = 'replay:/a "quoted" \\ path'
    path = unit_config(
        tmp_path,
        matcher_target="127.0.0.1:1",
        pki_dir=tmp_path / "pki",
        serial_port="/dev/pts/9",
        relay_key=b"\x01" * 16,
        camera_source=odd,
        vision={"steady_frames": 1, "tracking": False},
        matcher={"deadline_s": None},
        screens={"port": 0},
    )
    document = tomllib.loads(path.read_text())
    assert document["camera"]["source"] == odd
    assert document["vision"] == {"steady_frames": 1, "tracking": False}
    assert "deadline_s" not in document["matcher"]
    assert document["matcher"]["pki_dir"] == str(tmp_path / "pki")
    assert document["screens"] == {"port": 0}
    assert (tmp_path / "relay.key").read_text() == "01" * 16
    assert (tmp_path / "relay.key").stat().st_mode & 0o077 == 0

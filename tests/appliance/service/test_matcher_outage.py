"""The service rides out matching-service outages instead of exiting.

Real parts: the reference matcher over mutual TLS on loopback (stopped and started on the
same port), the MCU simulator on a pty, a replay camera of real photos.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.service.config import load_config
from appliance.service.runner import EXIT_OK, run_service
from appliance.service.status import read_status
from firmware_bridge.simulator import Simulator
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from tests.support import unit_config

TIMEOUT = 90.0  # model load, mTLS and the first inference on a slow CI runner


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _matcher_on(port: int, matcher, encoder) -> Iterator[object]:
    """A fresh reference service (it knows no session) on ``port``, the flight enrolled."""
    service = service_from_pki(matcher.pki, matcher.service.matcher.gallery, encoder)
    server, bound = start_server(service, matcher.pki, address=f"127.0.0.1:{port}")
    assert bound == port
    try:
        yield service
    finally:
        server.stop(grace=None)


def _frames(tmp_path: Path, demo_photos: Path) -> Path:
    """Two enrolled travellers with an empty lane between them."""
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(demo_photos / "obama2.jpg", folder / "a-obama.jpg")
    blank = np.full((720, 1280, 3), 118, np.uint8)
    for i in range(30):
        cv2.imwrite(str(folder / f"b-empty-{i:02d}.png"), blank)
    shutil.copy(demo_photos / "biden.jpg", folder / "c-biden.jpg")
    return folder


def _config(tmp_path: Path, port: int, pki_root: Path, simulator: Simulator, key: bytes, frames):
    return load_config(
        unit_config(
            tmp_path,
            matcher_target=f"127.0.0.1:{port}",
            pki_dir=pki_root,
            serial_port=simulator.port,
            relay_key=key,
            camera_source=f"replay:{frames}",
            vision={"steady_frames": 1},
            matcher={"deadline_s": 5.0},
            serial={"pulse_ms": 1000},
            service={"stall_s": 5.0, "session_refresh_s": 3600},
        )
    )


@pytest.fixture
def mcu() -> Iterator[tuple[Simulator, bytes]]:
    key = os.urandom(32)
    simulator = Simulator(key).start()
    yield simulator, key
    simulator.stop()


@contextlib.contextmanager
def _serving(config) -> Iterator[list[int]]:
    stop = threading.Event()
    results: list[int] = []
    thread = threading.Thread(
        target=lambda: results.append(run_service(config, stop, result_hold_s=0.1)), daemon=True
    )
    thread.start()
    try:
        yield results
    finally:
        stop.set()
        thread.join(timeout=TIMEOUT)
        assert not thread.is_alive()


def _status(config) -> dict:
    try:
        return read_status(config.status_path)
    except (OSError, ValueError):
        return {}


def test_matcher_down_at_boot_the_gate_waits_out_of_service_then_serves(
    tmp_path, matcher, encoder, demo_photos, mcu
):
    simulator, key = mcu
    port = _free_port()
    config = _config(
        tmp_path, port, matcher.pki.root, simulator, key, _frames(tmp_path, demo_photos)
    )
    with _serving(config) as results:
        # The service starts (no exit for systemd to count), the gate refers: relay shut.
        assert wait_for(lambda: _status(config).get("service") == "serving", TIMEOUT)
        assert wait_for(lambda: _status(config).get("state") == "refer_to_agent", TIMEOUT)
        status = _status(config)
        assert status["links"]["matcher"].startswith("down")
        assert status["session"]["open"] is False
        assert results == [] and simulator.relay_pulses == []
        assert not simulator.relay_open
        # The matcher comes up: the session opens by itself and the traveller is boarded.
        with _matcher_on(port, matcher, encoder):
            assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT), _status(config)
            assert wait_for(lambda: _status(config)["links"]["matcher"] == "up", TIMEOUT)
            assert _status(config)["session"]["gallery_size"] == 2
    assert results == [EXIT_OK]


def test_after_a_matcher_restart_the_next_traveller_is_not_referred(
    tmp_path, matcher, encoder, demo_photos, mcu
):
    simulator, key = mcu
    port = _free_port()
    config = _config(
        tmp_path, port, matcher.pki.root, simulator, key, _frames(tmp_path, demo_photos)
    )
    with _serving(config) as results:
        with _matcher_on(port, matcher, encoder):
            assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT), _status(config)
        # The matcher restarts while the first traveller walks through: it forgets every
        # session. The service reopens its own before the next traveller arrives.
        with _matcher_on(port, matcher, encoder) as restarted:
            assert wait_for(lambda: len(restarted.sessions._sessions) == 1, TIMEOUT)
            simulator.set_door(True)
            simulator.set_door(False)
            assert wait_for(lambda: len(simulator.relay_pulses) == 2, TIMEOUT), _status(config)
            simulator.set_door(True)
            simulator.set_door(False)

            def records() -> list[str]:
                path = config.boarding_log_path
                return path.read_text().splitlines() if path.exists() else []

            assert wait_for(lambda: len(records()) == 2, TIMEOUT), records()
        lines = records()
        assert [('"granted"' in line) for line in lines] == [True, True], lines
    assert results == [EXIT_OK]

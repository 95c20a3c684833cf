"""systemd integration: the notify protocol with a watchdog fed only while the capture
pipeline makes progress, and the unit files (verify, exposure score)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.service.config import load_config
from appliance.service.heartbeat import PipelineHeartbeat, WatchdogFeeder
from appliance.service.runner import EXIT_OK, run_service
from appliance.vision.frame_pump import FramePump
from firmware_bridge.simulator import Simulator
from testbed.testing import FakeClock
from tests.support import REPO, unit_config

UNITS = REPO / "systemd"
MAX_EXPOSURE = 2.0


# --------------------------------------------------------------------- watchdog, unit level


def test_feeder_pings_only_while_frames_arrive():
    clock = FakeClock()
    sent: list[str] = []
    heartbeat = PipelineHeartbeat(clock)
    feeder = WatchdogFeeder(
        heartbeat, stall_s=10.0, interval=5.0, notify=lambda s: sent.append(s) or True
    )
    heartbeat.beat()
    clock.now += 4
    assert feeder.tick() and sent == ["WATCHDOG=1"]
    clock.now += 6.5  # 10.5 s without a frame: stalled
    sent.clear()
    assert not feeder.tick()
    assert sent == ["STATUS=capture pipeline stalled: no frame for 10 s"]
    sent.clear()
    for _ in range(5):
        clock.now += 5
        assert not feeder.tick()
    assert sent == []  # no ping at all while stalled: systemd will restart the service
    heartbeat.beat()
    assert feeder.tick()
    assert sent == ["STATUS=capture pipeline recovered", "WATCHDOG=1"]


def test_feeder_without_watchdog_still_tracks_health():
    clock = FakeClock()
    sent: list[str] = []
    heartbeat = PipelineHeartbeat(clock)
    feeder = WatchdogFeeder(heartbeat, 2.0, interval=None, notify=sent.append)
    feeder.interval = None
    clock.now += 3
    assert not feeder.tick()
    assert not any(s == "WATCHDOG=1" for s in sent)


# ------------------------------------------------------- watchdog, the service on real parts


class StallingCamera:
    """A live camera that delivers frames until ``stall`` is set, then hangs in read()
    (a stuck driver) until ``release`` is set."""

    live = True

    def __init__(self) -> None:
        self.stall = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()

    def read(self):
        if self.stall.is_set() and not self.release.is_set():
            self.release.wait()
        if self.closed.is_set():
            return None
        time.sleep(0.005)
        return np.full((720, 1280, 3), 128, np.uint8)  # an empty lane: no face

    def close(self) -> None:
        self.closed.set()
        self.release.set()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def _until(sock: socket.socket, predicate, seen: list[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if predicate(message):
            return message
    raise AssertionError(f"no matching notify message; saw {seen[-10:]}")


def test_watchdog_stops_when_the_pipeline_stalls_and_resumes(
    tmp_path: Path, matcher, notify_socket: socket.socket
):
    key = os.urandom(32)
    simulator = Simulator(key).start()
    camera = StallingCamera()
    stop = threading.Event()
    results: list[int] = []
    try:
        config = load_config(
            unit_config(
                tmp_path,
                matcher_target=matcher.target,
                pki_dir=matcher.pki.root,
                serial_port=simulator.port,
                relay_key=key,
                camera_source="opencv:0",
                service={"stall_s": 1.0},
            )
        )
        thread = threading.Thread(
            target=lambda: results.append(
                run_service(
                    config,
                    stop,
                    result_hold_s=0.1,
                    open_camera=lambda _spec: FramePump(camera, live=True),
                )
            ),
            daemon=True,
        )
        thread.start()
        seen: list[str] = []
        _until(notify_socket, lambda m: m == "READY=1", seen)
        for _ in range(3):
            _until(notify_socket, lambda m: m == "WATCHDOG=1", seen)
        assert any(m.startswith("STATUS=serving BA0283") and "gate ready" in m for m in seen)

        camera.stall.set()  # the camera thread hangs inside read()
        _until(notify_socket, lambda m: m.startswith("STATUS=capture pipeline stalled"), seen)
        after: list[str] = []
        with pytest.raises(AssertionError):  # nothing but silence or STATUS for a while
            _until(notify_socket, lambda m: m == "WATCHDOG=1", after, timeout=1.5)
        assert "WATCHDOG=1" not in after

        camera.release.set()  # frames flow again: pings resume
        _until(notify_socket, lambda m: m == "STATUS=capture pipeline recovered", seen)
        _until(notify_socket, lambda m: m == "WATCHDOG=1", seen)
        stop.set()
        thread.join(timeout=60)
        assert results == [EXIT_OK]
        _until(notify_socket, lambda m: m == "STOPPING=1", seen)
    finally:
        stop.set()
        camera.close()
        simulator.stop()


# ---------------------------------------------------------------------------- unit files


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def _runnable_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at a binary that exists here (the venv's
    console scripts are not installed under /opt on a build machine)."""
    copies = []
    for unit in sorted(UNITS.glob("*.service")):
        text = re.sub(
            r"^(ExecStart=)/opt/gate-appliance/\.venv/bin/\S+",
            r"\1/bin/true",
            unit.read_text(),
            flags=re.M,
        )
        target = tmp_path / unit.name
        target.write_text(text)
        copies.append(target)
    return copies


def test_units_verify(tmp_path: Path):
    tool = _analyze()
    copies = _runnable_copies(tmp_path)
    assert {c.name for c in copies} >= {"gate-appliance.service", "gate-matcher.service"}
    result = subprocess.run(
        [tool, "verify", *map(str, copies)], capture_output=True, text=True, timeout=120
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and str(tmp_path) in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["gate-appliance.service", "gate-matcher.service"])
def test_exposure_score(unit: str):
    tool = _analyze()
    result = subprocess.run(
        [tool, "security", "--offline=true", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


# ----------------------------------------------------------------------------- install.sh


def test_install_script_dry_run_changes_nothing():
    script = REPO / "scripts" / "install.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    if shutil.which("shellcheck"):
        lint = subprocess.run(
            ["shellcheck", str(script)], capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0, lint.stdout
    result = subprocess.run(
        ["bash", str(script), "--dry-run", "--with-matcher", "--prefix", "/nonexistent/gate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing was changed" in result.stdout
    assert "would run: systemctl enable gate-matcher.service" in result.stdout
    assert not Path("/nonexistent/gate").exists()
    steps = [line for line in result.stdout.splitlines() if re.match(r"^\[\d+\] ", line)]
    assert len(steps) == 6

"""The on-device service running the gate workflow on real parts.

Real matcher over mutual TLS, the firmware simulator on a pty, a replay camera of a demo
photo copied into the test's folder (test input, not a capture), and a barcode scanner
on a real pty (serial) or a pipe standing in for stdin (keyboard wedge). Everything is
observed from the outside: the simulator's relay, the status file, the boarding log, the
purge ledger and sd_notify messages. No wall-clock assertions: every wait polls with a
generous timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.custody.ledger import list_segments
from appliance.errors import ConfigError, ScannerError, StartupError
from appliance.gate.boarding_log import FIELDS, MAX_TEXT
from appliance.service.config import GateConfig, check_service_config, load_config
from appliance.service.runner import EXIT_OK, main, run_service
from appliance.service.status import read_status
from firmware_bridge.simulator import Simulator
from matching_service.gallery import Gallery, flight_key
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from testbed.testing import FLIGHT, TestAgent, make_bcbp
from tests.support import unit_config

TIMEOUT = 90.0  # generous: model load, mTLS and the first inference on a slow CI runner
OBAMA_NAME, OBAMA_PNR = "OBAMA/BARACK", "ABC123"
AGENT = TestAgent("A7")
VALID_PASS = make_bcbp(OBAMA_NAME, OBAMA_PNR)  # BA0283 from LAX, day 329 = 2026-11-25
WRONG_FLIGHT_PASS = make_bcbp(OBAMA_NAME, OBAMA_PNR, flight="0999")


# ---------------------------------------------------------------------------- fixtures


@dataclass
class PassMatcher:
    target: str
    pki_root: Path
    service: object


@pytest.fixture(scope="module")
def pass_matcher(pki, encoder, demo_photos, tmp_path_factory) -> Iterator[PassMatcher]:
    """The reference matcher with the flight's passengers enrolled with name and booking
    reference (the session ``matcher`` fixture enrols faces only), so pass-then-face can
    confirm the face is the pass holder's."""
    work = tmp_path_factory.mktemp("pass-holders")
    manifest = work / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": "PAX-OB",
                    "category": "us_citizen",
                    "photo": str(demo_photos / "obama.jpg"),
                    "pnr": OBAMA_PNR,
                    "name": OBAMA_NAME,
                },
                {
                    "traveller_id": "PAX-BI",
                    "category": "in_scope",
                    "photo": str(demo_photos / "biden.jpg"),
                    "pnr": "XYZ789",
                    "name": "BIDEN/JOSEPH",
                },
            ]
        )
    )
    gallery = Gallery(work / "gallery.sqlite")
    key = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    gallery.enroll_manifest(key, manifest, encoder, photos_root=demo_photos)
    service = service_from_pki(pki, gallery, encoder)
    server, port = start_server(service, pki)
    yield PassMatcher(f"localhost:{port}", pki.root, service)
    server.stop(grace=None)


@pytest.fixture
def frames(tmp_path: Path, demo_photos: Path) -> Path:
    """A replay folder holding one still of the enrolled passenger (one traveller)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(demo_photos / "obama2.jpg", folder)
    return folder


@pytest.fixture
def mcu() -> Iterator[tuple[Simulator, bytes]]:
    key = os.urandom(32)
    simulator = Simulator(key).start()
    yield simulator, key
    simulator.stop()


class PtyScanner:
    """A serial barcode scanner on a real pseudo-terminal: the service opens ``port``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)

    def scan(self, text: str) -> None:
        os.write(self.master, text.encode("ascii") + b"\r")

    def hang_up(self) -> None:
        """The scanner's line goes away (its reads fail from now on)."""
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        for fd in (self.slave, self.master):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.slave = self.master = -1


@pytest.fixture
def pty_scanner() -> Iterator[PtyScanner]:
    scanner = PtyScanner()
    yield scanner
    scanner.close()


class StdinScanner:
    """A keyboard wedge: lines written into a pipe that the service reads as sys.stdin."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        read_fd, self._write_fd = os.pipe()
        self.stream = os.fdopen(read_fd, "r", encoding="ascii")
        monkeypatch.setattr(sys, "stdin", self.stream)

    def scan(self, text: str) -> None:
        os.write(self._write_fd, text.encode("ascii") + b"\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._write_fd)  # EOF: the reader thread ends
        with contextlib.suppress(OSError, ValueError):
            self.stream.close()


@pytest.fixture
def stdin_scanner(monkeypatch: pytest.MonkeyPatch) -> Iterator[StdinScanner]:
    scanner = StdinScanner(monkeypatch)
    yield scanner
    scanner.close()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s while healthy
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def _write_config(
    tmp_path: Path,
    *,
    target: str,
    pki_root: Path,
    mcu_port: str,
    relay_key: bytes,
    frames: Path,
    mode: str = "biometric_first",
    scanner: str | None = None,
) -> Path:
    AGENT.registry().save(tmp_path / "state" / "agents.json")  # the unit's registered agent
    scanner_section = {"scanner": {"port": scanner}} if scanner else {}
    return unit_config(
        tmp_path,
        matcher_target=target,
        pki_dir=pki_root,
        serial_port=mcu_port,
        relay_key=relay_key,
        camera_source=f"replay:{frames}",
        # each still is shown for one frame: sent once it passes
        vision={"steady_frames": 1},
        serial={"pulse_ms": 1000},
        capture={"mode": mode},
        **scanner_section,
        service={"stall_s": 1.0},
    )


class Service:
    """run_service on a thread, observed through its files."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.results: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.results.append(run_service(config, self.stop, result_hold_s=0.1)),
            daemon=True,
        )

    def status(self) -> dict:
        try:
            return read_status(self.config.status_path)
        except (OSError, ValueError):
            return {}

    def state(self) -> str | None:
        return self.status().get("state")

    def wait_serving(self) -> None:
        assert wait_for(lambda: self.status().get("service") == "serving", TIMEOUT), self.status()

    def wait_state(self, state: str) -> None:
        assert wait_for(lambda: self.state() == state, TIMEOUT), (state, self.status())

    def log(self) -> list[dict]:
        path = self.config.boarding_log_path
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("ascii").splitlines() if line]

    def wait_log(self, count: int) -> list[dict]:
        assert wait_for(lambda: len(self.log()) >= count, TIMEOUT), self.log()
        return self.log()

    def ledger_lines(self) -> int:
        """Purge records written (read only: the service owns the ledger)."""
        segments = list_segments(self.config.ledger_path)
        return sum(len(path.read_bytes().splitlines()) for _, path in segments)

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)
        assert not self.thread.is_alive()
        assert len(self.results) == 1
        return self.results[0]


@contextlib.contextmanager
def running(config: GateConfig) -> Iterator[Service]:
    service = Service(config)
    service.thread.start()
    try:
        yield service
    finally:
        service.stop.set()
        service.thread.join(timeout=TIMEOUT)


def _walk_through(simulator: Simulator, service: Service) -> None:
    """The traveller walks through the open barrier: the door sensor opens, then closes.
    Not before the gate has taken the grant: the MCU opens the relay before the host has
    its answer, and nobody gets through a barrier in those few milliseconds."""
    assert wait_for(lambda: simulator.relay_open, timeout=10)
    passage = ("granted", "agent_released")
    assert wait_for(lambda: service.state() in passage, TIMEOUT), service.status()
    simulator.set_door(True)
    simulator.set_door(False)


def _assert_no_image_or_identity(service: Service) -> None:
    """The boarding log holds short fields only: no image bytes, no name, no PNR."""
    raw = service.config.boarding_log_path.read_bytes()
    assert raw.isascii()
    for marker in (b"\xff\xd8", b"/9j/", b"iVBOR", b"OBAMA", OBAMA_PNR.encode(), b"M1"):
        assert marker not in raw
    assert (service.config.boarding_log_path.stat().st_mode & 0o777) == 0o600
    for record in service.log():
        assert set(record) <= FIELDS
        for value in record.values():
            assert value is None or isinstance(value, bool | int | float | str)
            if isinstance(value, str):
                assert len(value) <= MAX_TEXT


# ---------------------------------------------------------------------- biometric-first


def test_biometric_first_boards_a_traveller(tmp_path, matcher, frames, mcu) -> None:
    """No scanner: the unattended 1:N gate grants, the door passage ends the traveller,
    and the end of the replay ends the service."""
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=matcher.target,
        pki_root=matcher.pki.root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
    )
    config = load_config(path)
    assert config.scanner is None
    assert config.boarding_log_path == tmp_path / "state" / "boarding-log.jsonl"
    with running(config) as service:
        assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT)
        _walk_through(simulator, service)
        (record,) = service.wait_log(1)
        service.thread.join(timeout=TIMEOUT)  # the replay's end ends the loop by itself
        assert not service.thread.is_alive()
    assert service.results == [EXIT_OK]
    assert simulator.relay_pulses == [1000]
    assert record["mode"] == "biometric_first"
    assert record["outcome"] == "granted" and record["event"] == "match"
    assert record["resolution"] == "door_closed" and not record["released_by_agent"]
    assert record["frame_sent"] is True and record["capture_id"]
    assert record["pass_check"] is None and record["scans"] == 0
    assert service.ledger_lines() >= 1
    _assert_no_image_or_identity(service)
    status = service.status()
    assert status["service"] == "stopped" and status["counters"]["granted"] == 1


# ----------------------------------------------------------------------- pass-then-face


def test_pass_then_face_waits_for_the_pass_then_grants(
    tmp_path, pass_matcher, frames, mcu, pty_scanner, notify_socket
) -> None:
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=pass_matcher.target,
        pki_root=pass_matcher.pki_root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
        mode="pass_then_face",
        scanner=pty_scanner.port,
    )
    config = load_config(path)
    assert config.scanner is not None and config.scanner.terminator_bytes == b"\r"
    with running(config) as service:
        service.wait_serving()
        # Waiting for a pass: no frame is taken, yet the watchdog keeps being fed for
        # well past stall_s (1 s): 30 pings at one per 0.1 s, none stalled.
        seen: list[str] = []
        notify_socket.settimeout(TIMEOUT)
        while seen.count("WATCHDOG=1") < 30:
            seen.append(notify_socket.recv(4096).decode())
        assert "READY=1" in seen
        assert not [m for m in seen if "stalled" in m]
        status = service.status()
        assert status["state"] == "ready" and status["counters"]["frames"] == 0
        assert simulator.relay_pulses == [] and service.thread.is_alive()

        pty_scanner.scan(VALID_PASS)
        assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT)
        _walk_through(simulator, service)
        (record,) = service.wait_log(1)
        service.wait_state("ready")
        assert service.thread.is_alive()  # the replay is not read again without a pass
        assert service.finish() == EXIT_OK
    assert simulator.relay_pulses == [1000]
    assert record["mode"] == "pass_then_face"
    assert record["outcome"] == "granted" and record["pass_check"] == "ok"
    assert record["flight"] == "BA283 2026-11-25" and record["scans"] == 1
    assert record["frame_sent"] is True and record["resolution"] == "door_closed"
    assert record["traveller_token"]
    _assert_no_image_or_identity(service)


def test_wrong_flight_pass_refers_with_nothing_captured(
    tmp_path, pass_matcher, frames, mcu, stdin_scanner
) -> None:
    """A pass for another flight refers at once: no frame read, nothing sent, nothing in
    the purge ledger; the gate waits for the agent (it does not capture meanwhile), the
    agent cancels, and the next traveller's pass still finds the camera's one frame."""
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=pass_matcher.target,
        pki_root=pass_matcher.pki_root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
        mode="pass_then_face",
        scanner="stdin",
    )
    config = load_config(path)
    assert config.scanner is not None and config.scanner.stdin
    receipts = len(pass_matcher.service.purge_receipts)
    with running(config) as service:
        service.wait_serving()
        stdin_scanner.scan(WRONG_FLIGHT_PASS)
        service.wait_state("refer_to_agent")
        status = service.status()
        assert status["counters"]["frames"] == 0 and status["counters"]["referred"] == 1
        assert service.ledger_lines() == 0 and service.log() == []
        assert simulator.relay_pulses == []

        stdin_scanner.scan("AGT:A42:CANCEL")  # a printed badge: refused, nothing changes
        stdin_scanner.scan("AGT:NOBODY:RELEASE")
        assert wait_for(lambda: service.status()["last_errors"], TIMEOUT)
        assert service.state() == "refer_to_agent" and simulator.relay_pulses == []
        stdin_scanner.scan(AGENT.action("CANCEL"))
        (refused,) = service.wait_log(1)
        service.wait_state("ready")
        assert service.status()["counters"]["frames"] == 0

        stdin_scanner.scan(VALID_PASS)  # the next traveller: the one frame is still there
        assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT)
        _walk_through(simulator, service)
        records = service.wait_log(2)
        # the grant's receipt only, sent in the background
        assert wait_for(lambda: len(pass_matcher.service.purge_receipts) == receipts + 1, TIMEOUT)
        assert service.finish() == EXIT_OK
    assert refused["outcome"] == "referred" and refused["pass_check"] == "wrong_flight"
    assert refused["flight"] == "BA999 2026-11-25"
    assert refused["frame_sent"] is False and refused["capture_id"] is None
    assert refused["frames_seen"] == 0 and refused["resolution"] == "agent_cancel"
    assert not refused["released_by_agent"]
    assert records[1]["outcome"] == "granted" and records[1]["pass_check"] == "ok"
    assert len(pass_matcher.service.purge_receipts) == receipts + 1  # the grant's only
    _assert_no_image_or_identity(service)


@pytest.mark.parametrize("how", ["button", "badge"])
def test_agent_release_after_an_opt_out_opens_the_gate(
    tmp_path, pass_matcher, frames, mcu, pty_scanner, how
) -> None:
    """The traveller opts out (the MCU's button, or the agent's OPTOUT badge): nothing is
    captured, the gate waits in manual_check; the agent checks the documents and scans
    a signed RELEASE, which pulses the relay; the door passage ends the traveller."""
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=pass_matcher.target,
        pki_root=pass_matcher.pki_root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
        mode="pass_then_face",
        scanner=pty_scanner.port,
    )
    config = load_config(path)
    with running(config) as service:
        service.wait_serving()
        if how == "button":
            simulator.press_opt_out()
        else:
            pty_scanner.scan(AGENT.action("OPTOUT"))
        service.wait_state("manual_check")
        assert wait_for(lambda: service.status().get("counters", {}).get("manual_check") == 1)
        assert simulator.relay_pulses == []

        release = AGENT.action("RELEASE")
        pty_scanner.scan(release)
        assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT)
        _walk_through(simulator, service)
        (record,) = service.wait_log(1)
        service.wait_state("ready")
        assert service.finish() == EXIT_OK
    assert simulator.relay_pulses == [1000]
    assert record["outcome"] == "manual_check" and record["released_by_agent"] is True
    assert record["resolution"] == "door_closed"
    assert record["frame_sent"] is False and record["capture_id"] is None
    assert record["frames_seen"] == 0 and record["pass_check"] is None
    assert service.ledger_lines() == 0
    _assert_no_image_or_identity(service)


def test_a_scanner_that_cannot_be_opened_is_a_clear_start_up_failure(
    tmp_path, pass_matcher, frames, mcu, caplog
) -> None:
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=pass_matcher.target,
        pki_root=pass_matcher.pki_root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
        mode="pass_then_face",
        scanner=str(tmp_path / "no-scanner-tty"),
    )
    with caplog.at_level("ERROR", logger="gate.service"):
        assert run_service(load_config(path)) == ScannerError.exit_code
    errors = [r.getMessage() for r in caplog.records if r.name == "gate.service"]
    assert len(errors) == 1 and "scanner on" in errors[0]
    assert read_status(tmp_path / "state" / "status.json")["service"] == "start-up failed"
    assert wait_for(lambda: not simulator.relay_open, timeout=10)
    assert simulator.relay_pulses == []


def test_a_boarded_register_that_cannot_be_read_is_a_clear_start_up_failure(
    tmp_path, pass_matcher, frames, mcu, caplog
) -> None:
    """Who boarded cannot be read back (an I/O error; here the register is a folder): the
    unit does not start, says why in one line, and the gate stays shut (a traceback
    before)."""
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=pass_matcher.target,
        pki_root=pass_matcher.pki_root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
        mode="biometric_first",
    )
    config = load_config(path)
    register = config.boarding_log_path.with_name(f"{config.boarding_log_path.stem}-boarded.jsonl")
    register.mkdir(parents=True)
    with caplog.at_level("ERROR", logger="gate.service"):
        assert run_service(config) == StartupError.exit_code
    errors = [r.getMessage() for r in caplog.records if r.name == "gate.service"]
    assert len(errors) == 1 and "who boarded cannot be read back" in errors[0]
    assert read_status(tmp_path / "state" / "status.json")["service"] == "start-up failed"
    assert simulator.relay_pulses == []


def test_a_scanner_failing_while_serving_ends_the_service(
    tmp_path, pass_matcher, frames, mcu, pty_scanner
) -> None:
    """The scanner's line goes away while the gate waits for a pass: the service exits
    (systemd reopens it) instead of waiting for scans that cannot come; the gate is shut."""
    simulator, key = mcu
    path = _write_config(
        tmp_path,
        target=pass_matcher.target,
        pki_root=pass_matcher.pki_root,
        mcu_port=simulator.port,
        relay_key=key,
        frames=frames,
        mode="pass_then_face",
        scanner=pty_scanner.port,
    )
    with running(load_config(path)) as service:
        service.wait_serving()
        pty_scanner.hang_up()
        service.thread.join(timeout=TIMEOUT)
        assert not service.thread.is_alive()
    assert service.results == [ScannerError.exit_code]
    assert service.status()["service"] == "stopped"
    assert any("scanner" in e["message"] for e in service.status()["last_errors"])
    assert simulator.relay_pulses == []


# ------------------------------------------------------------------------ configuration


@pytest.fixture
def base_config(tmp_path: Path) -> Path:
    return _write_config(
        tmp_path,
        target="localhost:1",
        pki_root=tmp_path / "pki",
        mcu_port="/dev/ttyACM0",
        relay_key=os.urandom(32),
        frames=tmp_path / "frames",
    )


def _with(path: Path, text: str) -> Path:
    path.write_text(path.read_text() + "\n" + text + "\n")
    return path


def test_scanner_and_boarding_log_defaults(base_config: Path, tmp_path: Path) -> None:
    config = load_config(_with(base_config, '[scanner]\nport = "/dev/ttyACM1"'))
    assert config.scanner is not None
    assert config.scanner.port == "/dev/ttyACM1" and not config.scanner.stdin
    assert (config.scanner.baudrate, config.scanner.terminator) == (9600, "CR")
    assert config.scanner.terminator_bytes == b"\r" and config.scanner.agent_prefix == "AGT:"
    assert config.agents_path == tmp_path / "state" / "agents.json"
    assert config.boarding_log_path == tmp_path / "state" / "boarding-log.jsonl"
    assert config.capture_mode == "biometric_first"


def test_scanner_and_boarding_log_values(base_config: Path, tmp_path: Path) -> None:
    config = load_config(
        _with(
            base_config,
            '[scanner]\nport = "/dev/ttyUSB3"\nbaudrate = 115200\nterminator = "crlf"\n'
            'agent_prefix = "#BADGE#"\n[boarding_log]\npath = "logs/boarding.jsonl"',
        )
    )
    assert config.scanner is not None
    assert (config.scanner.baudrate, config.scanner.terminator) == (115200, "CRLF")
    assert config.scanner.terminator_bytes == b"\r\n"
    assert config.scanner.agent_prefix == "#BADGE#"
    assert config.boarding_log_path == tmp_path / "logs" / "boarding.jsonl"


def test_a_list_of_agent_ids_is_refused_as_no_authentication(base_config: Path) -> None:
    listed = '[scanner]\nport = "/dev/ttyACM1"\nagent_ids = ["A7", "B9"]'
    with pytest.raises(ConfigError, match=r"text anyone can print.*gatectl agents add"):
        load_config(_with(base_config, listed))


def test_stdin_scanner(base_config: Path) -> None:
    config = load_config(_with(base_config, '[scanner]\nport = "stdin"\nagent_prefix = "AG-"'))
    assert config.scanner is not None and config.scanner.stdin
    assert config.scanner.agent_prefix == "AG-"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[scanner]", "scanner.port"),  # missing port
        ('[scanner]\nport = ""', "scanner.port"),
        ("[scanner]\nport = 3", "scanner.port"),
        ('[scanner]\nport = " /dev/ttyACM1"', "scanner.port"),
        ('[scanner]\nport = "/dev/ttyACM0"', "scanner.port"),  # the MCU's own port
        ('[scanner]\nport = "/dev/ttyACM1"\nbaudrate = 12345', "scanner.baudrate"),
        ('[scanner]\nport = "/dev/ttyACM1"\nbaudrate = 300', "scanner.baudrate"),
        ('[scanner]\nport = "/dev/ttyACM1"\nbaudrate = "9600"', "scanner.baudrate"),
        ('[scanner]\nport = "/dev/ttyACM1"\nbaudrate = true', "scanner.baudrate"),
        ('[scanner]\nport = "/dev/ttyACM1"\nterminator = "NUL"', "scanner.terminator"),
        ('[scanner]\nport = "/dev/ttyACM1"\nterminator = 13', "scanner.terminator"),
        ('[scanner]\nport = "stdin"\nbaudrate = 9600', "scanner.baudrate"),
        ('[scanner]\nport = "stdin"\nterminator = "LF"', "scanner.terminator"),
        ('[scanner]\nport = "/dev/ttyACM1"\nagent_prefix = ""', "scanner.agent_prefix"),
        ('[scanner]\nport = "/dev/ttyACM1"\nagent_prefix = "MGR:"', "scanner.agent_prefix"),
        ('[scanner]\nport = "/dev/ttyACM1"\nagent_prefix = "A B"', "scanner.agent_prefix"),
        ('[scanner]\nport = "/dev/ttyACM1"\nagent_prefix = "AGÉNT"', "scanner.agent_prefix"),
        ('[scanner]\nport = "/dev/ttyACM1"\nagent_prefix = "]Q3"', "scanner.agent_prefix"),
        ('[scanner]\nport = "/dev/ttyACM1"\nagent_prefix = 1', "scanner.agent_prefix"),
        ('[scanner]\nport = "/dev/ttyACM1"\nparity = "N"', "'parity' in [scanner]"),
        ("[agents]\nfile = 1", "agents.file"),
        ("[agents]\naction_ttl_s = 3600", "agents.action_ttl_s"),
        ("[boarding_log]\npath = 1", "boarding_log.path"),
        ('[boarding_log]\npath = "state/purge-ledger.jsonl"', "boarding_log.path"),
        ('[boarding_log]\nfile = "x.jsonl"', "'file' in [boarding_log]"),
    ],
)
def test_bad_scanner_and_boarding_log_values_name_the_key(
    base_config: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(_with(base_config, text))


def test_scanner_must_be_a_table(base_config: Path) -> None:
    base_config.write_text('scanner = "/dev/ttyACM1"\n' + base_config.read_text())
    with pytest.raises(ConfigError, match=r"scanner must be a table"):
        load_config(base_config)


def test_pass_then_face_needs_a_scanner(base_config: Path, tmp_path: Path) -> None:
    text = base_config.read_text().replace('mode = "biometric_first"', 'mode = "pass_then_face"')
    base_config.write_text(text)
    config = load_config(base_config)  # well-formed: gatectl provision writes such files
    with pytest.raises(ConfigError, match=r"pass_then_face needs \[scanner\]"):
        check_service_config(config)
    assert main(base_config) == ConfigError.exit_code
    assert run_service(config) == ConfigError.exit_code  # refused before any part is opened
    status = read_status(tmp_path / "state" / "status.json")
    assert status["service"] == "start-up failed"
    assert any("pass_then_face needs [scanner]" in e["message"] for e in status["last_errors"])
    check_service_config(load_config(_with(base_config, '[scanner]\nport = "stdin"')))

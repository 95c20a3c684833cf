"""Journal logging with structured fields (fake systemd.journal), the stderr fallback,
and the status file `gatectl status` reads."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import ClassVar

import pytest

from appliance.log_context import capture_context
from appliance.service import journal
from appliance.service.config import load_config
from appliance.service.runner import EXIT_OK, run_service
from appliance.service.status import format_status, read_status
from firmware_bridge.simulator import Simulator
from tests.support import REPO, unit_config


class FakeJournalHandler(logging.Handler):
    """What systemd-python's JournalHandler does with a record: upper-case attributes
    become journal fields next to MESSAGE."""

    sent: ClassVar[list[dict]] = []

    def __init__(self, **defaults: str) -> None:
        super().__init__()
        self.defaults = defaults

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in record.__dict__.items() if k.isupper()}
        FakeJournalHandler.sent.append({"MESSAGE": self.format(record), **self.defaults, **fields})


@pytest.fixture
def fake_journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    package = types.ModuleType("systemd")
    module = types.ModuleType("systemd.journal")
    module.JournalHandler = FakeJournalHandler
    package.journal = module
    monkeypatch.setitem(sys.modules, "systemd", package)
    monkeypatch.setitem(sys.modules, "systemd.journal", module)
    FakeJournalHandler.sent = []
    socket_path = tmp_path / "journal.socket"
    socket_path.touch()
    return socket_path


@pytest.fixture
def logger() -> logging.Logger:
    log = logging.getLogger(f"gate.test.journal.{os.getpid()}")
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def test_records_carry_gate_state_and_capture_fields(fake_journal, logger):
    state = ["ready"]
    journal.setup_logging("gate-0042", lambda: state[0], logger=logger, socket_path=fake_journal)
    assert isinstance(logger.handlers[0], FakeJournalHandler)
    logger.info("gate ready")
    state[0] = "verifying"
    logger.info("traveller: %s", "granted", extra={"capture_id": "cap-1"})
    with capture_context("cap-2"):
        logger.warning("verdict late")
    logger.info("after")
    sent = FakeJournalHandler.sent
    assert [s["GATE_ID"] for s in sent] == ["gate-0042"] * 4
    assert [s["GATE_STATE"] for s in sent] == ["ready", "verifying", "verifying", "verifying"]
    assert [s["CAPTURE_ID"] for s in sent] == ["", "cap-1", "cap-2", ""]
    assert sent[0]["SYSLOG_IDENTIFIER"] == "gate-appliance"
    assert sent[1]["MESSAGE"] == "traveller: granted"


def test_image_bytes_never_reach_the_journal(fake_journal, logger):
    journal.setup_logging("gate-0042", logger=logger, socket_path=fake_journal)
    logger.info("frame %r", b"\xff\xd8\xff\xe0" + bytes(64))
    logger.info("plain line")
    first, second = (s["MESSAGE"] for s in FakeJournalHandler.sent)
    assert "withheld" in first and "xff" not in first and "\\x00" not in first
    assert second == "plain line"


def test_a_broken_state_source_does_not_stop_logging(fake_journal, logger):
    def broken() -> str:
        raise RuntimeError("no gate yet")

    journal.setup_logging("gate-0042", broken, logger=logger, socket_path=fake_journal)
    logger.error("still logged")
    assert FakeJournalHandler.sent[-1]["GATE_STATE"] == ""


def test_no_journal_socket_falls_back_to_stderr(fake_journal, logger, tmp_path, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    journal.setup_logging("gate-0042", lambda: "ready", logger=logger, socket_path=tmp_path / "x")
    assert not isinstance(logger.handlers[0], FakeJournalHandler)
    logger.info("hello", extra={"capture_id": "cap-9"})
    assert FakeJournalHandler.sent == []
    assert stream.getvalue().strip() == (
        f"INFO {logger.name}: hello [gate=gate-0042 state=ready capture=cap-9]"
    )


def test_no_systemd_python_falls_back_to_stderr(monkeypatch, logger, tmp_path):
    monkeypatch.setitem(sys.modules, "systemd", None)  # import fails
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    socket_path = tmp_path / "journal.socket"
    socket_path.touch()
    journal.setup_logging("gate-7", logger=logger, socket_path=socket_path)
    assert not journal.journal_available(socket_path)
    logger.warning("careful")
    assert "careful [gate=gate-7]" in stream.getvalue()


# ------------------------------------------------------------------------------- status


def test_service_writes_status_that_gatectl_status_reads(tmp_path, matcher, demo_photos):
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(demo_photos / "obama2.jpg", frames)
    key = os.urandom(32)
    simulator = Simulator(key).start()
    try:
        path = unit_config(
            tmp_path,
            matcher_target=matcher.target,
            pki_dir=matcher.pki.root,
            serial_port=simulator.port,
            relay_key=key,
            camera_source=f"replay:{frames}",
            # each still is shown for one frame: sent once it passes
            vision={"steady_frames": 1},
            serial={"pulse_ms": 1000},
        )
        config = load_config(path)
        assert config.status_path == tmp_path / "state" / "status.json"
        results: list[int] = []
        thread = threading.Thread(
            target=lambda: results.append(run_service(config, result_hold_s=0.1)), daemon=True
        )
        thread.start()
        thread.join(timeout=120)
        assert results == [EXIT_OK]
    finally:
        simulator.stop()

    status_file = tmp_path / "state" / "status.json"
    assert (status_file.stat().st_mode & 0o777) == 0o600
    status = read_status(status_file)
    assert status["service"] == "stopped" and status["device_id"] == "gate-dev-0001"
    assert status["counters"]["granted"] == 1 and status["counters"]["served"] == 1
    assert status["flight"]["number"] == "0283" and status["mode"] == "biometric_first"
    assert set(status["links"]) == {"serial", "matcher", "camera"}
    raw = status_file.read_bytes()
    assert len(raw) < 4096 and b"\xff\xd8" not in raw and b"token" not in raw
    assert not list(status_file.parent.glob(".status.json.*"))  # no temporary left behind

    lines = format_status(status)
    assert lines[0].startswith("gate gate-dev-0001: service stopped")
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 3, result.stderr  # stopped: not serving, like is-active
    assert "granted 1" in result.stdout and "BA0283 2026-11-25 from LAX gate B42" in result.stdout
    assert "STOPPED" in result.stdout and "last     granted at" in result.stdout
    as_json = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "status",
            "--status-file",
            str(status_file),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert json.loads(as_json.stdout)["counters"]["granted"] == 1


def test_status_without_a_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--status-file", str(tmp_path / "no")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 4 and "no status" in result.stdout


def test_startup_failure_is_in_the_status(tmp_path, matcher):
    path = unit_config(
        tmp_path,
        matcher_target=matcher.target,
        pki_dir=matcher.pki.root,
        serial_port=str(tmp_path / "no-tty"),
        relay_key=bytes(32),
        camera_source=f"replay:{tmp_path}",
        matcher={"deadline_s": None},
        flight={"gate": None},
    )
    assert run_service(load_config(path)) != EXIT_OK
    status = read_status(tmp_path / "state" / "status.json")
    assert status["service"] == "start-up failed"
    assert any("gate MCU" in e["message"] for e in status["last_errors"])

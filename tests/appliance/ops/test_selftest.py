"""`gatectl selftest` on a provisioned unit: real matcher, simulator on a pty, replay camera.

The healthy set-up passes every check; then each fault is injected on its own and must
turn exactly the check that names it to FAIL (or WARN), with a fix hint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.custody.audit import default_key_path
from appliance.custody.ledger import PurgeLedger
from appliance.custody.transaction import CaptureTransaction
from appliance.ops.provision import Answers, provision
from appliance.ops.selftest import FAIL, PASS, SKIP, WARN, format_report, run_selftest
from appliance.paths import models_dir
from appliance.service.config import load_config
from appliance.vision.models import DEFAULT_RUNTIME, model_path
from firmware_bridge.simulator import Simulator
from gate_contract.clock import now_ms
from gate_contract.files import write_private
from gate_contract.keys import DeviceScope, PkiLayout, load_private
from matching_service.dev_ca import issue_device
from matching_service.gallery import Gallery
from matching_service.server import start_server
from matching_service.servicer import MatchingService
from tests.support import REPO, EnrollmentKit


@pytest.fixture
def kit(enrollment_kit: EnrollmentKit) -> EnrollmentKit:
    return enrollment_kit


@dataclass
class Unit:
    config: Path
    state: Path
    simulator: Simulator
    pki: PkiLayout
    device_id: str

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))


_ids = iter(range(10_000))


@pytest.fixture
def unit(kit, tmp_path: Path, demo_photos: Path) -> Iterator[Unit]:
    """A unit provisioned as a technician would, with a gate MCU simulator on a pty."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = os.urandom(32)
    relay = state / "relay.key"
    relay.write_text(key.hex())
    relay.chmod(0o600)
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(demo_photos / "obama2.jpg", frames)
    simulator = Simulator(key).start()
    device = f"gate-st-{os.getpid()}-{next(_ids):04d}"
    answers = Answers(
        device_id=device,
        airport="LAX",
        gate="B42",
        carrier="BA",
        flight="0283",
        date="2026-11-25",
        camera=f"replay:{frames}",
        serial_port=simulator.port,
        matcher=kit.matcher_target,
        enroll=kit.enroll_target,
        ca_file=str(kit.ca_file),
        token=kit.tokens.issue(device, ttl_s=600, scope=DeviceScope("LAX")),
        config=str(tmp_path / "gate.toml"),
        data_dir=str(state),
    )
    provision(answers, out=lambda _: None, check_matcher=False)
    config = load_config(answers.config)
    ledger = PurgeLedger(config.ledger_path, default_key_path(config.ledger_path))
    for _ in range(3):
        ledger.append(CaptureTransaction(device).purge("granted", "verdict"))
    try:
        yield Unit(Path(answers.config), state, simulator, PkiLayout(state / "pki"), device)
    finally:
        simulator.stop()


def _status(report, name: str) -> str:
    check = report.get(name)
    assert check is not None, f"no {name} check in {[c.name for c in report.checks]}"
    return check.status


def _only_failures(report) -> set[str]:
    return {c.name for c in report.checks if c.status == FAIL}


# ------------------------------------------------------------------------------- healthy


def test_healthy_unit_passes_every_check(unit: Unit):
    report = run_selftest(unit.config)
    assert report.ok, "\n".join(format_report(report))
    names = [c.name for c in report.checks]
    assert names == [
        "config",
        "models",
        "detector",
        "camera",
        "serial",
        "matcher",
        "gallery",
        "certificate",
        "clock",
        "key permissions",
        "ledger",
        "disk",
    ]
    assert all(c.status == PASS for c in report.checks), "\n".join(format_report(report))
    assert "one face" in report.get("detector").detail
    assert "days left" in report.get("certificate").detail
    assert "ms against the matching service" in report.get("clock").detail
    assert "3 records" in report.get("ledger").detail
    assert "relay not pulsed" in report.get("serial").detail
    assert unit.simulator.relay_pulses == []


def test_audit_verify_reads_the_ledger_the_config_names(unit: Unit):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "audit", "verify", "--config", str(unit.config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3" in result.stdout and str(unit.state) in result.stdout + result.stderr


def test_an_empty_flight_gallery_is_a_warning(unit: Unit):
    unit.edit('number = "0283"', 'number = "0999"')  # a flight nobody enrolled
    report = run_selftest(unit.config)
    assert _status(report, "gallery") == WARN, "\n".join(format_report(report))
    assert "EMPTY" in report.get("gallery").detail
    assert report.ok  # a warning: the airline may enrol it later


def test_selftest_refuses_what_run_refuses(unit: Unit):
    """A unit that passes selftest starts: pass_then_face without [scanner] fails both."""
    from appliance.service.runner import main as run_main

    unit.edit('mode = "biometric_first"', 'mode = "pass_then_face"')
    report = run_selftest(unit.config)
    assert _status(report, "config") == FAIL
    assert "pass_then_face needs [scanner]" in report.get("config").detail
    assert run_main(unit.config) != 0  # and the service refuses it the same way


def test_relay_flag_pulses_the_relay(unit: Unit):
    report = run_selftest(unit.config, relay=True)
    assert _status(report, "serial") == PASS, report.get("serial")
    assert len(unit.simulator.relay_pulses) == 1


def test_command_line_checklist_and_json(unit: Unit):
    def gatectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance",
                "selftest",
                "--config",
                str(unit.config),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            cwd=REPO,
        )

    human = gatectl()
    assert human.returncode == 0, human.stdout + human.stderr
    assert human.stdout.count("[PASS]") == 12
    assert "selftest PASSED" in human.stdout
    data = gatectl("--json")
    assert data.returncode == 0, data.stderr
    result = json.loads(data.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["failed"] == []
    assert len(result["checks"]) == 12
    failing = gatectl("--json", "--min-free-mb", "1e12")
    assert failing.returncode == 1
    assert json.loads(failing.stdout.strip().splitlines()[-1])["failed"] == ["disk"]


# -------------------------------------------------------------------------------- faults


def test_no_camera_frames(unit: Unit, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    unit.edit(f'source = "replay:{tmp_path / "frames"}"', f'source = "replay:{empty}"')
    report = run_selftest(unit.config)
    assert _only_failures(report) == {"camera"}
    assert "no frame" in report.get("camera").detail and report.get("camera").hint


def test_corrupt_model(unit: Unit, tmp_path: Path):
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy)
    target = model_path("full", DEFAULT_RUNTIME, copy)  # the runtime the unit runs
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    report = run_selftest(unit.config, models_dir=copy)
    assert _only_failures(report) == {"models"}
    assert "corrupt" in report.get("models").detail
    assert _status(report, "detector") == SKIP
    assert "acquire_assets" in report.get("models").hint


def test_the_trackers_model_is_checked_too(unit: Unit, tmp_path: Path):
    """The tracker follows faces with the short-range model: a corrupt one fails the
    check as the zone model would."""
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy)
    target = model_path("short", DEFAULT_RUNTIME, copy)
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    report = run_selftest(unit.config, models_dir=copy)
    assert _only_failures(report) == {"models"}
    assert "blazeface_short" in report.get("models").detail


def test_serial_port_missing(unit: Unit):
    unit.simulator.stop()
    report = run_selftest(unit.config)
    assert _only_failures(report) == {"serial"}
    assert "cable" in report.get("serial").hint


def test_wrong_relay_key_fails_the_relay_pulse(unit: Unit):
    """Only relay commands are authenticated, so a wrong key shows with --relay."""
    write_private(unit.state / "relay.key", (os.urandom(32).hex()).encode())
    report = run_selftest(unit.config, relay=True)
    assert _only_failures(report) == {"serial"}
    assert "wrong relay key" in report.get("serial").detail
    assert unit.simulator.relay_pulses == []


def test_matcher_down(unit: Unit, kit: EnrollmentKit):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unit.edit(f'target = "{kit.matcher_target}"', f'target = "localhost:{port}"')
    report = run_selftest(unit.config)
    assert _only_failures(report) == {"matcher"}
    assert _status(report, "clock") == SKIP
    assert _status(report, "certificate") == PASS


def _replace_certificate(unit: Unit, matcher, tmp_path: Path, **validity) -> None:
    other = issue_device(matcher.pki, tmp_path / "reissued", unit.device_id, **validity)
    for name in ("device_cert", "device_key"):
        target = getattr(unit.pki, name)
        target.write_bytes(getattr(other, name).read_bytes())
        target.chmod(0o600)


def test_expired_certificate(unit: Unit, matcher, tmp_path: Path):
    now = dt.datetime.now(dt.UTC)
    _replace_certificate(
        unit,
        matcher,
        tmp_path,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=2),
    )
    report = run_selftest(unit.config)
    assert "certificate" in _only_failures(report)
    assert "expired" in report.get("certificate").detail
    assert "--rotate" in report.get("certificate").hint
    # TLS refuses an expired client certificate too: the matcher check says so.
    assert _only_failures(report) <= {"certificate", "matcher"}


def test_certificate_near_expiry_warns_without_failing(unit: Unit, matcher, tmp_path: Path):
    now = dt.datetime.now(dt.UTC)
    _replace_certificate(unit, matcher, tmp_path, not_after=now + dt.timedelta(days=10, hours=1))
    report = run_selftest(unit.config)
    assert report.ok, "\n".join(format_report(report))
    assert _status(report, "certificate") == WARN
    assert "10 days left" in report.get("certificate").detail


@pytest.mark.parametrize("which", ["device", "relay"])
def test_key_file_readable_by_others(unit: Unit, which: str):
    path = unit.pki.device_key if which == "device" else unit.state / "relay.key"
    path.chmod(0o644)
    report = run_selftest(unit.config)
    assert _only_failures(report) == {"key permissions"}
    check = report.get("key permissions")
    assert f"{path} is 0644" in check.detail and f"chmod 600 {path}" in check.hint


def test_broken_ledger(unit: Unit):
    ledger = unit.state / "purge-ledger.jsonl"
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(lines[0] + lines[2] + lines[1])
    report = run_selftest(unit.config)
    assert _only_failures(report) == {"ledger"}
    assert "BROKEN" in report.get("ledger").detail


def test_low_disk(unit: Unit):
    report = run_selftest(unit.config, min_free_mb=1e12)
    assert _only_failures(report) == {"disk"}
    assert "MB needed" in report.get("disk").detail


def test_bad_config_value(unit: Unit):
    unit.edit('mode = "biometric_first"', 'mode = "face_only"')
    report = run_selftest(unit.config)
    assert [(c.name, c.status) for c in report.checks] == [("config", FAIL)]
    assert "capture.mode" in report.get("config").detail


# ------------------------------------------------------------------------------ clock skew


@pytest.fixture(scope="module")
def skewed(matcher, tmp_path_factory):
    """A second reference service whose clock runs ``offset[0]`` ms ahead of ours."""
    offset = [0]
    service = MatchingService(
        Gallery(tmp_path_factory.mktemp("skew") / "g.sqlite"),
        None,
        load_private(matcher.pki.sealing_key),
        load_private(matcher.pki.signing_key),
        clock_ms=lambda: now_ms() + offset[0],
    )
    server, port = start_server(service, matcher.pki)
    yield offset, f"localhost:{port}", service
    server.stop(grace=None)


@pytest.mark.parametrize(
    ("offset_ms", "status", "text"),
    [
        (0, PASS, "ms against"),
        (5_000, WARN, "ms against"),
        (-25_000, FAIL, "ms against"),
        (120_000, FAIL, "more than 60 s"),
    ],
)
def test_clock_skew(unit: Unit, kit: EnrollmentKit, skewed, offset_ms: int, status: str, text: str):
    offset, target, service = skewed
    offset[0] = offset_ms
    unit.edit(f'target = "{kit.matcher_target}"', f'target = "{target}"')
    report = run_selftest(unit.config)
    check = report.get("clock")
    assert check.status == status, check
    assert text in check.detail
    if text == "ms against":  # the measured skew is the injected one, within the round trip
        measured = int(check.detail.split(" ms")[0])
        error = int(check.detail.split("+/- ")[1].split(" ms")[0])
        assert abs(measured - offset_ms) <= error + 1000
    if status != PASS:
        assert "timedatectl" in check.hint
    if offset_ms != 120_000:  # the probe was answered, and its purge receipt recorded
        assert service.purge_receipts[-1].reason == "selftest"

"""`gatectl provision` against the real reference service's enrollment and matching ports."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from appliance.errors import ProvisionError
from appliance.matching.client import MatchingClient
from appliance.ops.provision import Answers, provision
from appliance.service.config import load_config, read_relay_key
from firmware_bridge.host import GateLink
from firmware_bridge.protocol import LinkKeys, MsgType, Result, pack_relay_pulse
from firmware_bridge.simulator import Simulator
from gate_contract.keys import DeviceScope, PkiLayout
from tests.support import REPO, EnrollmentKit, gatectl

_counter = iter(range(1000))


def _answers(env: EnrollmentKit, tmp_path: Path, **changes: str) -> Answers:
    device = changes.pop("device_id", f"gate-prov-{os.getpid()}-{next(_counter):03d}")
    answers = Answers(
        device_id=device,
        airport="LAX",
        gate="B42",
        carrier="BA",
        flight="0283",
        date="2026-11-25",
        camera=f"replay:{tmp_path / 'frames'}",
        serial_port="/dev/ttyACM0",
        mode="pass_then_face",
        scanner="/dev/ttyACM1",
        matcher=env.matcher_target,
        enroll=env.enroll_target,
        ca_file=str(env.ca_file),
        token=env.tokens.issue(device, ttl_s=600, scope=DeviceScope("LAX")),
        config=str(tmp_path / "etc" / "gate.toml"),
        data_dir=str(tmp_path / "state"),
    )
    for key, value in changes.items():
        setattr(answers, key, value)
    return answers


def _tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under root with its mode and (for files) content."""
    found: dict[str, tuple[int, bytes | None]] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        mode = path.stat().st_mode & 0o777
        found[str(path.relative_to(root))] = (mode, path.read_bytes() if path.is_file() else None)
    return found


def _assert_owner_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {mode:04o}"


def _flags(a: Answers) -> list[str]:
    from appliance.ops.provision import QUESTIONS

    # --flag=value: a token may start with "-", which argparse would take for an option
    return [f"{flag}={getattr(a, name)}" for name, (_, flag, _) in QUESTIONS.items()]


# --------------------------------------------------------------------------- non-interactive


def test_non_interactive_provision_enrols_and_writes_a_valid_config(
    enrollment_kit, tmp_path, matcher
):
    a = _answers(enrollment_kit, tmp_path)
    result = gatectl("provision", "--non-interactive", *_flags(a))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines[:6]] == [f"[{i}/6" for i in range(1, 7)]
    assert "SERVING" in lines[5]

    config = load_config(a.config)
    assert config.device_id == a.device_id
    assert config.capture_mode == "pass_then_face"
    assert (
        config.flight.carrier,
        config.flight.flight_number,
        config.flight.departure_airport,
    ) == (
        "BA",
        "0283",
        "LAX",
    )
    assert config.flight.gate == "B42"
    assert config.serial.port == "/dev/ttyACM0" and len(config.serial.relay_key) == 32
    assert config.matcher.target == enrollment_kit.matcher_target
    assert config.ledger_path == tmp_path / "state" / "purge-ledger.jsonl"
    layout = PkiLayout(config.matcher.pki_dir)
    cert = x509.load_pem_x509_certificate(layout.device_cert.read_bytes())
    assert cert.subject.rfc4514_string() == f"OU=airport=LAX,CN={a.device_id}"
    assert layout.ca_cert.read_bytes() == enrollment_kit.ca_file.read_bytes()
    _assert_owner_only(tmp_path / "state")
    assert (Path(a.config).stat().st_mode & 0o777) == 0o600
    assert not list((tmp_path / "state").glob(".pki-staging-*"))

    # The layout is exactly what the service's client uses: a session over mutual TLS.
    client = MatchingClient(config.matcher.target, layout, config.device_id, deadline_s=10)
    try:
        from testbed.testing import FLIGHT

        assert client.open_session(FLIGHT).session_id
    finally:
        client.close()


def test_answers_file_and_a_second_identical_run_changes_nothing(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    answers_file = tmp_path / "answers.toml"
    answers_file.write_text(
        "\n".join(f'{k} = "{v}"' for k, v in vars(a).items() if k != "token") + "\n"
    )
    token_file = tmp_path / "token"
    token_file.write_text(a.token + "\n")
    first = gatectl(
        "provision", "-y", "--answers", str(answers_file), "--token-file", str(token_file)
    )
    assert first.returncode == 0, first.stdout + first.stderr
    before = _tree(tmp_path / "state"), _tree(tmp_path / "etc")

    # Same answers, token already used up: nothing to do, so it is not even needed.
    second = gatectl("provision", "-y", "--answers", str(answers_file))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing changed" in second.stdout
    assert second.stdout.count("unchanged") == 4
    assert (_tree(tmp_path / "state"), _tree(tmp_path / "etc")) == before


def test_dry_run_shows_each_step_and_writes_nothing(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    result = gatectl("provision", "-y", "--dry-run", *_flags(a))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("would ") >= 4
    assert "nothing was written" in result.stdout
    assert not (tmp_path / "state").exists() and not (tmp_path / "etc").exists()
    # the token was not used: a real run with it still works
    provision(a, out=lambda _: None, check_matcher=False)
    assert load_config(a.config).device_id == a.device_id


# --------------------------------------------------------------------------- re-provisioning


def test_rotate_makes_a_new_key_and_certificate_and_moves_the_old_aside(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    layout = PkiLayout(tmp_path / "state" / "pki")
    old_key, old_cert = layout.device_key.read_bytes(), layout.device_cert.read_bytes()
    relay = (tmp_path / "state" / "relay.key").read_bytes()
    config_before = Path(a.config).read_bytes()

    old_serial = x509.load_pem_x509_certificate(old_cert).serial_number
    a.token = enrollment_kit.tokens.issue(a.device_id, ttl_s=600, scope=DeviceScope("LAX"))
    lines: list[str] = []
    changes = provision(a, rotate=True, out=lines.append)
    assert changes == ["device key and certificate"], lines
    # the technician is told how to revoke the old certificate on the matching service
    assert any(f"gate-matcher revoke --revocations FILE --serial {old_serial:#x}" in line
               for line in lines), lines  # fmt: skip
    # no gate MCU on /dev/ttyACM0 here: its counter epoch is left as it was, and said so
    assert any("relay counter epoch" in line and "skipped" in line for line in lines)
    assert layout.device_key.read_bytes() != old_key
    assert layout.device_cert.read_bytes() != old_cert
    aside = list((tmp_path / "state").glob("pki.old-*"))
    assert len(aside) == 1
    assert (aside[0] / "device" / "device.key").read_bytes() == old_key
    _assert_owner_only(tmp_path / "state")
    # the MCU's relay key and the configuration stay as they were, and still load
    assert (tmp_path / "state" / "relay.key").read_bytes() == relay
    assert Path(a.config).read_bytes() == config_before
    config = load_config(a.config)
    client = MatchingClient(config.matcher.target, layout, config.device_id, deadline_s=10)
    try:
        assert client.health()
    finally:
        client.close()
    assert any("SERVING" in line for line in lines)


def test_rotate_recovers_a_poisoned_relay_counter(enrollment_kit, tmp_path):
    """The MCU's counter pushed to its end (issue 11: by a forged STATUS to a version 1
    host) leaves the gate out of service; `provision --rotate` starts a new counter epoch
    over the serial line, with nothing taken from the line but the MCU's authenticated
    epoch, and the next grant pulses."""
    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    key = read_relay_key(tmp_path / "state" / "relay.key")
    with Simulator(key) as mcu:
        a.serial_port = mcu.port
        link = GateLink(mcu.port, key).open()
        try:
            session = link.request_status().session
            poison = pack_relay_pulse(LinkKeys(key), 0, 100, 0xFFFFFFFE, session=session, n=1 << 30)
            assert link.send_command(MsgType.RELAY_PULSE, poison) == Result.OK
        finally:
            link.close()
        link = GateLink(mcu.port, key).open()
        assert not link.link_up and "--rotate" in (link.counter_fault or "")
        link.close()

        a.token = enrollment_kit.tokens.issue(a.device_id, ttl_s=600, scope=DeviceScope("LAX"))
        lines: list[str] = []
        changes = provision(a, rotate=True, out=lines.append, check_matcher=False)
        assert "relay counter epoch" in changes, lines
        assert any(
            "new epoch 1, counter 0 (was epoch 0 at counter 4294967294)" in line for line in lines
        )
        assert (mcu.epoch, mcu.last_counter) == (1, 0)

        link = GateLink(mcu.port, key).open()
        try:
            assert link.link_up and link.counter_fault is None
            link.pulse_relay(100)
        finally:
            link.close()
        assert mcu.relay_pulses == [100, 100]  # the poisoning one, then the grant
        assert (mcu.epoch, mcu.last_counter) == (1, 1)


def test_changed_answers_update_the_config_only(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    key = PkiLayout(tmp_path / "state" / "pki").device_key.read_bytes()
    a.flight, a.date, a.gate = "0117", "2026-11-26", "C7"
    changes = provision(a, out=lambda _: None, check_matcher=False)
    assert changes == ["configuration file"]
    config = load_config(a.config)
    assert (config.flight.flight_number, config.flight.date, config.flight.gate) == (
        "0117",
        "2026-11-26",
        "C7",
    )
    assert PkiLayout(tmp_path / "state" / "pki").device_key.read_bytes() == key


def test_enrolled_as_another_device_needs_rotate(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    b = _answers(enrollment_kit, tmp_path)  # a new device id on the same unit
    with pytest.raises(ProvisionError, match="--rotate"):
        provision(b, out=lambda _: None, check_matcher=False)


# ------------------------------------------------------------------------------ bad tokens


@pytest.mark.parametrize("kind", ["unknown", "used", "wrong_device", "missing"])
def test_bad_token_is_a_clear_error_and_nothing_is_half_written(enrollment_kit, tmp_path, kind):
    a = _answers(enrollment_kit, tmp_path)
    if kind == "unknown":
        a.token = "made-up-token"
    elif kind == "used":
        provision(
            _answers(enrollment_kit, tmp_path / "other", device_id=a.device_id, token=a.token),
            out=lambda _: None,
            check_matcher=False,
        )
    elif kind == "wrong_device":
        a.token = enrollment_kit.tokens.issue(
            "gate-somebody-else", ttl_s=600, scope=DeviceScope("LAX")
        )
    else:
        a.token = ""
    result = gatectl("provision", "-y", *_flags(a))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr.lower()
    assert "token" in message
    if kind == "missing":
        assert "gate-matcher issue-token" in message
    else:
        assert "enrollment refused" in message
    # no key, no certificate, no relay key, no config, no staging folder
    state = tmp_path / "state"
    assert not any(p.is_file() for p in state.rglob("*")) if state.exists() else True
    assert not Path(a.config).exists()


def test_a_token_for_another_airport_is_refused_before_anything_is_written(
    enrollment_kit, tmp_path
):
    """The certificate would not let this unit board its own flight: say so, write nothing."""
    a = _answers(enrollment_kit, tmp_path)
    a.token = enrollment_kit.tokens.issue(a.device_id, ttl_s=600, scope=DeviceScope("JFK"))
    result = gatectl("provision", "-y", *_flags(a))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "enrols this unit for JFK, not LAX" in result.stderr
    assert "--airport LAX" in result.stderr
    assert not Path(a.config).exists()
    assert not (tmp_path / "state" / "pki" / "device").exists()


# ----------------------------------------------------------------------------- bad answers


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("airport", "Los Angeles", "--airport"),
        ("carrier", "british", "--carrier"),
        ("flight", "BA0283", "--flight"),
        ("date", "25/11/2026", "--date"),
        ("camera", "webcam0", "--camera"),
        ("mode", "face_only", "--mode"),
        ("matcher", "matcher.example", "--matcher"),
        ("enroll", "localhost:99999", "--enroll"),
        ("device_id", "gate 1", "--device-id"),
        ("gate", "", "--gate"),
        ("ca_file", "/nonexistent/ca.pem", "--ca-file"),
    ],
)
def test_bad_answers_name_the_answer_and_write_nothing(
    enrollment_kit, tmp_path, field, value, named
):
    a = _answers(enrollment_kit, tmp_path)
    setattr(a, field, value)
    with pytest.raises(ProvisionError, match=named):
        provision(a, out=lambda _: None)
    assert not (tmp_path / "state").exists() and not Path(a.config).exists()


def test_answers_file_with_unknown_key(tmp_path):
    path = tmp_path / "answers.toml"
    path.write_text('device_id = "g"\nflavour = "x"\n')
    result = gatectl("provision", "-y", "--answers", str(path))
    assert result.returncode == 2
    assert "unknown answer 'flavour'" in result.stderr


@pytest.mark.parametrize(
    ("field", "toml_value"),
    [
        ("serial_port", r'"/dev/ttyACM0\nport = \"/dev/evil\""'),  # once a TOMLDecodeError
        ("device_id", r'"gate-1\u0000"'),  # NUL
        ("device_id", r'"gate-1\n"'),  # a trailing newline
        ("gate", r'"B4\u202e2"'),  # a right-to-left override: looks like another gate
        ("camera", r'"replay:/tmp/x\u0007"'),
        ("matcher", r'"localhost:1\t"'),
        ("data_dir", r'"/tmp/state\u0000x"'),
        ("config", r'"/tmp/gate\r.toml"'),
    ],
)
def test_a_control_character_in_any_answer_is_refused_and_nothing_is_written(
    enrollment_kit, tmp_path, field, toml_value
):
    a = _answers(enrollment_kit, tmp_path)
    answers_file = tmp_path / "answers.toml"
    lines = [f'{k} = "{v}"' for k, v in vars(a).items() if k not in (field, "token")]
    answers_file.write_text("\n".join([*lines, f"{field} = {toml_value}"]) + "\n")
    result = gatectl("provision", "-y", "--answers", str(answers_file), f"--token={a.token}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"({field})" in result.stderr and "control character" in result.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "etc").exists()


def test_every_bad_answer_is_reported_at_once(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path, airport="Los Angeles", carrier="british")
    a.date, a.scanner = "2026-02-30", ""
    result = gatectl("provision", "-y", *_flags(a))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for named in ("--airport", "--carrier", "--date", "--scanner"):
        assert named in result.stderr, result.stderr
    assert a.token not in result.stderr
    assert not (tmp_path / "state").exists()


def test_airport_carrier_and_flight_are_upper_cased(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path, airport="lax", carrier="ba", flight="283a")
    provision(a, out=lambda _: None, check_matcher=False)
    flight = load_config(a.config).flight
    assert (flight.departure_airport, flight.carrier, flight.flight_number) == (
        "LAX",
        "BA",
        "283A",
    )


# ------------------------------------------------------------------ re-provisioning merges


def _hand_edit(config: Path) -> None:
    """What a technician does by hand on a provisioned unit."""
    text = config.read_text()
    for old, new in [
        ('port = "/dev/ttyACM0"', 'port = "/dev/serial/by-id/usb-gate-mcu"  # the MCU'),
        ("[camera]\n", "[camera]\n# the lane camera, moved on 12 Nov\n"),
        ('[scanner]\nport = "/dev/ttyACM1"', '[scanner]\nport = "/dev/ttyACM1"\nbaudrate = 19200'),
    ]:
        assert old in text, old
        text = text.replace(old, new, 1)
    text += '\n[boarding_log]\npath = "boarding.jsonl"   # hand-added\n'
    config.write_text(text)


def test_reprovision_changes_only_what_was_asked_with_a_diff_and_a_backup(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    config = Path(a.config)
    _hand_edit(config)
    hand_made = config.read_text()

    # Only the flight is given: every other answer comes from the file as it is now.
    result = gatectl("provision", "-y", "--config", a.config, "--flight", "0117")
    assert result.returncode == 0, result.stdout + result.stderr
    text = config.read_text()
    assert text == hand_made.replace('number = "0283"', 'number = "0117"')
    loaded = load_config(config)
    assert loaded.serial.port == "/dev/serial/by-id/usb-gate-mcu"
    assert loaded.scanner is not None and loaded.scanner.baudrate == 19200
    assert loaded.boarding_log_path == config.parent / "boarding.jsonl"
    # the diff before writing, and the old file kept, owner-only
    assert f"--- {config} (now)" in result.stdout
    assert '-number = "0283"' in result.stdout and '+number = "0117"' in result.stdout
    changed = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]
    assert changed == ['-number = "0283"', '+number = "0117"']
    backups = list(config.parent.glob("gate.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == hand_made
    assert backups[0].stat().st_mode & 0o777 == 0o600
    assert backups[0].name in result.stdout


def test_reprovision_dry_run_shows_the_diff_and_writes_nothing(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    config = Path(a.config)
    _hand_edit(config)
    before = _tree(tmp_path / "etc"), _tree(tmp_path / "state")
    result = gatectl("provision", "-y", "--dry-run", "--config", a.config, "--gate", "C7")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '-gate = "B42"' in result.stdout and '+gate = "C7"' in result.stdout
    assert "would update" in result.stdout
    assert (_tree(tmp_path / "etc"), _tree(tmp_path / "state")) == before


def test_reprovision_refuses_a_change_the_service_would_refuse(enrollment_kit, tmp_path):
    """provision checks what `gatectl run` checks: no pass_then_face without a scanner."""
    a = _answers(enrollment_kit, tmp_path, mode="biometric_first", scanner="")
    provision(a, out=lambda _: None, check_matcher=False)
    before = Path(a.config).read_text()
    result = gatectl("provision", "-y", "--config", a.config, "--mode", "pass_then_face")
    assert result.returncode == 2 and "--scanner" in result.stderr
    assert Path(a.config).read_text() == before


# ------------------------------------------------------------------------- guided, on a pty


def _read_until(fd: int, wanted: str, buffer: list[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = "".join(buffer)
        if wanted in text:
            return text
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"never saw {wanted!r} in:\n{text}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"process ended before {wanted!r}:\n{text}")
            buffer.append(chunk.decode(errors="replace"))


def test_guided_provision_on_a_pseudo_terminal(enrollment_kit, tmp_path):
    a = _answers(enrollment_kit, tmp_path)
    master, slave = os.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "provision",
            "--config",
            a.config,
            "--data-dir",
            a.data_dir,
            "--serial-port",
            "/dev/ttyUSB0",  # a default the technician accepts with Enter
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        close_fds=True,
    )
    os.close(slave)
    replies = [
        ("Device id", a.device_id),
        ("Departure airport", "Los Angeles"),  # refused: asked again
        ("try again", "lax"),  # normalised to LAX
        ("Gate (", a.gate),
        ("Carrier", "ba"),
        ("Flight number", a.flight),
        ("Flight date", "2026-13-01"),  # no such month: asked again
        ("try again", a.date),
        ("Camera source", a.camera),
        ("Serial port", "/dev/ttyUSB0\x01"),  # a control character: asked again
        ("try again", ""),  # keep [/dev/ttyUSB0]
        ("Capture mode", ""),  # keep [biometric_first]: no scanner asked for
        ("Matching service", a.matcher),
        ("Enrollment service", a.enroll),
        ("CA certificate", a.ca_file),
        ("enrollment token", a.token),
        ("Configuration file", ""),
        ("State directory", ""),
        ("Proceed?", "y"),
    ]
    buffer: list[str] = []
    seen: list[str] = []
    try:
        for prompt, reply in replies:
            text = _read_until(master, prompt, buffer)
            seen.append(text)
            buffer[:] = [text[text.index(prompt) + len(prompt) :]]
            os.write(master, reply.encode() + b"\n")
        text = _read_until(master, "provisioned", buffer)
        assert process.wait(timeout=120) == 0, text
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert "[6/6]" in text
    everything = "".join(seen) + text
    assert a.token not in everything  # the token is never echoed
    assert "Boarding-pass scanner" not in everything
    config = load_config(a.config)
    assert config.device_id == a.device_id
    assert (config.flight.departure_airport, config.flight.carrier) == ("LAX", "BA")
    assert config.serial.port == "/dev/ttyUSB0"
    assert config.capture_mode == "biometric_first"
    _assert_owner_only(tmp_path / "state")


def test_guided_on_a_provisioned_unit_prefills_every_answer_from_its_config(
    enrollment_kit, tmp_path
):
    from appliance.ops.provision import answers_from_config, ask

    a = _answers(enrollment_kit, tmp_path)
    provision(a, out=lambda _: None, check_matcher=False)
    _hand_edit(Path(a.config))
    found = answers_from_config(Path(a.config))
    again = Answers(config=a.config)
    for name, value in found.items():
        setattr(again, name, value)
    asked: list[str] = []
    ask(again, prompt=lambda q: asked.append(q) or "", out=lambda _: None, secret=lambda q: "")
    # Enter everywhere keeps what the unit has, hand-set values included
    assert again.serial_port == "/dev/serial/by-id/usb-gate-mcu"
    assert (again.device_id, again.flight, again.mode, again.scanner) == (
        a.device_id,
        a.flight,
        a.mode,
        a.scanner,
    )
    assert again.data_dir == a.data_dir and again.enroll == a.enroll
    assert again.ca_file == str(Path(a.data_dir) / "pki" / "ca.pem")
    assert any("[/dev/serial/by-id/usb-gate-mcu]" in q for q in asked)
    assert provision(again, out=lambda _: None, check_matcher=False) == []  # nothing changes


def test_an_answers_file_or_config_nested_too_deeply_is_one_provision_error(tmp_path):
    """tomllib recurses: an answers file, or the configuration being re-provisioned,
    holding arrays thousands deep was a RecursionError traceback."""
    from appliance.errors import ProvisionError
    from appliance.ops.provision import answers_from_config, load_answers

    deep = tmp_path / "deep.toml"
    deep.write_text("device_id = " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ProvisionError, match="not readable TOML"):
        load_answers(deep)
    with pytest.raises(ProvisionError):
        answers_from_config(deep)

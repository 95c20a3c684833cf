"""``gatectl provision``: one command that turns a freshly installed unit into a gate,
and the documented way to change one.

Guided (prompts with defaults, on a terminal: each answer checked as it is typed, the
token never echoed) or non-interactive (flags and/or a TOML answers file; flags win;
every bad answer reported at once). On a unit that has a configuration, every answer
defaults to what the file says, so only what the technician changes changes. The steps,
each with one progress line:

1. check the answers (every value, before anything is written; errors name the answer;
   no control characters anywhere, since each value ends up in a file or a certificate);
2. directories: the state directory and its ``pki`` folder, owner-only (0700);
3. device key and certificate: a new P-256 key and CSR made on the unit, enrolled with a
   one-time token against the matching service's enrollment port
   (``appliance.matching.enrollment.enroll``); the certificate chain, the pinned CA and
   the service's sealing and verdict-signing public keys are stored in the
   ``gate_contract.keys.PkiLayout`` shape the service reads (files 0600, folders 0700);
4. relay key: the HMAC key the gate MCU shares, created once (0600) and never rotated
   here, since the MCU holds the same key; with ``--rotate`` the MCU's relay counter
   then starts a new epoch (``firmware_bridge.tools.counter_epoch``: the recovery of a
   used-up or poisoned counter; the gate service must be stopped, the port free);
5. the configuration file (TOML, 0600): a new file is written whole; an existing one is
   merged (:func:`merge_config`: only the keys provisioning owns are set, and only where
   the answer differs; comments, hand-set keys and hand-added sections stay). The unified
   diff is shown first (under ``--dry-run`` too), the old file is kept as
   ``<name>.bak-<UTC time>``, and the result must pass the checks ``gatectl run`` makes;
6. a mutual-TLS health check against the matching service with the new certificate.

Idempotent: a second identical run finds every step done and says "nothing changed"
(the token is not needed then, nor used). ``--dry-run`` prints each step as "would ..."
and touches nothing. ``--rotate`` enrols a new key and certificate (a new token is
needed) and moves the old PKI folder aside as ``pki.old-<UTC time>``; the configuration
keeps pointing at ``pki``, so it stays valid. Enrollment happens in a staging folder
that replaces ``pki`` only once the answer has been checked: a refused token leaves
nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

from appliance.errors import ConfigError, ProvisionError
from appliance.gate.workflow import Mode
from appliance.paths import models_dir
from appliance.service.config import (
    DEVICE_ID,
    SCANNER_STDIN,
    check_service_config,
    control_character,
    load_config,
    parse_camera_source,
    parse_config,
    read_relay_key,
)
from gate_contract.documents import parse_toml
from gate_contract.files import write_private
from gate_contract.paths import data_dir

DEFAULT_CONFIG = Path("/etc/gate-appliance/gate.toml")
RELAY_KEY_BYTES = 32
RENEW_BEFORE_DAYS = 30


@dataclass
class Answers:
    device_id: str = ""
    airport: str = ""
    gate: str = ""
    carrier: str = ""
    flight: str = ""
    date: str = ""
    camera: str = "picamera2"
    serial_port: str = "/dev/ttyACM0"
    mode: str = Mode.BIOMETRIC_FIRST
    scanner: str = ""  # the boarding-pass scanner's port, "stdin", or "" for none
    matcher: str = ""
    enroll: str = ""
    ca_file: str = ""
    token: str = ""
    config: str = str(DEFAULT_CONFIG)
    data_dir: str = ""


# answer -> (prompt, command-line flag)
class Question(NamedTuple):
    """One answer of provisioning: what is asked, its flag, and what the flag takes."""

    text: str
    flag: str
    metavar: str


QUESTIONS: dict[str, Question] = {
    "device_id": Question("Device id (as on the enrollment token)", "--device-id", "ID"),
    "airport": Question("Departure airport (IATA, e.g. LAX)", "--airport", "IATA"),
    "gate": Question("Gate (e.g. B42)", "--gate", "GATE"),
    "carrier": Question("Carrier (IATA airline code, e.g. BA)", "--carrier", "IATA"),
    "flight": Question("Flight number (e.g. 0283)", "--flight", "NUMBER"),
    "date": Question("Flight date (YYYY-MM-DD)", "--date", "YYYY-MM-DD"),
    "camera": Question(
        "Camera source (picamera2 | opencv:<index|path|url> | replay:<path>)", "--camera", "SOURCE"
    ),
    "serial_port": Question("Serial port of the gate MCU", "--serial-port", "DEVICE"),
    "mode": Question(f"Capture mode ({' | '.join(Mode)})", "--mode", "MODE"),
    "scanner": Question(
        f"Boarding-pass scanner (serial device, or {SCANNER_STDIN!r} for a keyboard wedge;"
        " agents are added with `gatectl agents add`)",
        "--scanner",
        "DEVICE",
    ),
    "matcher": Question("Matching service (host:port, mutual TLS)", "--matcher", "HOST:PORT"),
    "enroll": Question("Enrollment service (host:port, server TLS)", "--enroll", "HOST:PORT"),
    "ca_file": Question("CA certificate file from the provisioning kit", "--ca-file", "FILE"),
    "token": Question(
        "One-time enrollment token (not needed if already enrolled)", "--token", "TOKEN"
    ),
    "config": Question("Configuration file to write", "--config", "FILE"),
    "data_dir": Question("State directory (keys, ledger, status)", "--data-dir", "DIR"),
}

_AIRPORT = re.compile(r"[A-Z]{3}")
_CARRIER = re.compile(r"[A-Z0-9]{2,3}")
_FLIGHT = re.compile(r"[0-9]{1,4}[A-Z]?")
_GATE = re.compile(r"[A-Za-z0-9-]{1,8}")


def load_answers(path: Path) -> dict[str, str]:
    """An answers file: a TOML table of the answer names (``device_id = "..."``)."""
    try:
        document = parse_toml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProvisionError(f"answers file {path} does not exist") from exc
    except (OSError, ValueError) as exc:  # unreadable, not TOML or nested too deeply
        raise ProvisionError(f"answers file {path} is not readable TOML: {exc}") from exc
    known = {f.name for f in fields(Answers)}
    values: dict[str, str] = {}
    for key, value in document.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ProvisionError(f"answers file {path}: unknown answer {key!r}")
        if not isinstance(value, str):
            raise ProvisionError(f"answers file {path}: {key} must be a string")
        values[name] = value
    return values


# ------------------------------------------------------------------------ current answers


def answers_from_config(path: Path) -> dict[str, str]:
    """The answers an existing configuration file gives (empty when there is none), so
    that re-provisioning changes only what the technician changes."""
    try:
        document = parse_toml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # unreadable, not TOML or nested too deeply
        raise ProvisionError(
            f"the configuration {path} is not readable TOML ({exc}); fix it or move it aside"
        ) from exc

    def get(section: str, key: str) -> str | None:
        table = document.get(section)
        value = table.get(key) if isinstance(table, dict) else None
        return value if isinstance(value, str) else None

    found = {
        "device_id": get("device", "id"),
        "airport": get("flight", "airport"),
        "gate": get("flight", "gate"),
        "carrier": get("flight", "carrier"),
        "flight": get("flight", "number"),
        "date": get("flight", "date"),
        "camera": get("camera", "source"),
        "serial_port": get("serial", "port"),
        "mode": get("capture", "mode") or Mode.BIOMETRIC_FIRST,
        "scanner": get("scanner", "port"),
        "matcher": get("matcher", "target"),
        "enroll": get("matcher", "enroll_target"),
    }
    state = get("service", "data_dir")
    pki = get("matcher", "pki_dir")
    if state:
        found["data_dir"] = str(_resolve(state, path.parent))
    elif pki:
        found["data_dir"] = str(_resolve(pki, path.parent).parent)
    pki_dir = _resolve(pki, path.parent) if pki else None
    if pki_dir is None and "data_dir" in found:
        pki_dir = Path(found["data_dir"]) / "pki"
    if pki_dir is not None and (pki_dir / "ca.pem").is_file():
        found["ca_file"] = str(pki_dir / "ca.pem")
    return {name: value for name, value in found.items() if value is not None}


def _resolve(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------- the checks


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdecimal() and 1 <= int(port) <= 65535)


def check_answer(name: str, value: str) -> str:
    """The answer as it will be written (case normalised where the format is fixed);
    raises ``ValueError`` saying what it may be."""
    bad = control_character(value)
    if bad:
        raise ValueError(f"contains a control character ({bad}); type it again")
    if name == "device_id" and not DEVICE_ID.fullmatch(value):
        raise ValueError("1..64 letters, digits, '.', '_' or '-'")
    if name in ("airport", "carrier", "flight"):
        value = value.strip().upper()
    if name == "airport" and not _AIRPORT.fullmatch(value):
        raise ValueError("three letters (IATA airport code)")
    if name == "gate" and not _GATE.fullmatch(value):
        raise ValueError("1..8 letters, digits or '-'")
    if name == "carrier" and not _CARRIER.fullmatch(value):
        raise ValueError("two or three letters or digits (IATA airline code)")
    if name == "flight" and not _FLIGHT.fullmatch(value):
        raise ValueError("1..4 digits and an optional letter")
    if name == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("an ISO date, YYYY-MM-DD") from None
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("an ISO date, YYYY-MM-DD")
    if name == "camera":
        try:
            parse_camera_source(value, Path.cwd(), key="camera")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    if name == "serial_port" and not value.strip():
        raise ValueError("a serial device path, e.g. /dev/ttyACM0")
    if name == "scanner" and value and value != SCANNER_STDIN and not value.startswith("/"):
        raise ValueError(f"a serial device path, e.g. /dev/ttyACM1, or {SCANNER_STDIN!r}")
    if name == "mode" and value not in tuple(Mode):
        raise ValueError(f"one of {', '.join(Mode)}")
    if name in ("matcher", "enroll") and not _host_port(value):
        raise ValueError("host:port with a port in 1..65535")
    if name == "ca_file":
        if not value:
            raise ValueError("the CA certificate (PEM) from the provisioning kit is needed")
        from cryptography import x509

        try:
            x509.load_pem_x509_certificate(Path(value).expanduser().read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"not a readable PEM certificate ({exc})") from None
    if name == "config" and not value:
        raise ValueError("a path for the configuration file")
    return value


def answer_errors(a: Answers) -> list[str]:
    """Every bad answer, one line each (normalising the good ones in place)."""
    errors: list[str] = []
    for name, (_question, flag, _metavar) in QUESTIONS.items():
        value = getattr(a, name)
        try:
            setattr(a, name, check_answer(name, value))
        except ValueError as exc:
            shown = "(hidden)" if name == "token" else repr(value)
            errors.append(f"{flag} ({name}) = {shown}: {exc}")
    if a.mode == Mode.PASS_THEN_FACE and not a.scanner:
        errors.append(
            "--scanner (scanner): pass_then_face starts each traveller with a scanned"
            f" boarding pass: give the scanner's serial device or {SCANNER_STDIN!r}"
        )
    if a.scanner and a.scanner == a.serial_port:
        errors.append(f"--scanner (scanner) = {a.scanner!r} is the gate MCU's port")
    return errors


def check_answers(a: Answers) -> None:
    """Raise ``ProvisionError`` naming every bad answer and what it may be."""
    errors = answer_errors(a)
    if errors:
        raise ProvisionError(
            "\n  ".join(["bad answers:", *errors]) if len(errors) > 1 else errors[0]
        )


def past_date_warning(a: Answers, today: dt.date | None = None) -> str | None:
    """A warning when the flight of the day is already over (a stale answers file)."""
    try:
        date = dt.date.fromisoformat(a.date)
    except ValueError:
        return None
    today = today or dt.datetime.now(dt.UTC).date()
    if date < today:
        return (
            f"WARNING: the flight date {a.date} is in the past; the gate will refer every"
            " boarding pass for today (change it with `gatectl flight set`)"
        )
    return None


# ----------------------------------------------------------------------- the config file


def _toml_string(value: str) -> str:
    import tomlkit

    return tomlkit.string(value).as_string()


def render_config(a: Answers, state: Path) -> str:
    """A new configuration file for these answers (paths absolute, in the state dir)."""
    q = _toml_string
    enroll = f"enroll_target = {q(a.enroll)}\n" if a.enroll else ""
    scanner = f"\n[scanner]\nport = {q(a.scanner)}\n" if a.scanner else ""
    return f"""# Written by `gatectl provision` for {a.device_id}. Re-run provision to change it
# (it merges: keys set by hand stay); check it with `gatectl selftest --config {a.config}`.

[device]
id = {q(a.device_id)}

[camera]
source = {q(a.camera)}

[matcher]
target = {q(a.matcher)}
{enroll}pki_dir = {q(str(state / "pki"))}

[serial]
port = {q(a.serial_port)}
relay_key_file = {q(str(state / "relay.key"))}

[vision]
models_dir = {q(str(models_dir().resolve()))}

[flight]
carrier = {q(a.carrier)}
number = {q(a.flight)}
date = {q(a.date)}
airport = {q(a.airport)}
gate = {q(a.gate)}

[capture]
mode = {q(a.mode)}
{scanner}
[ledger]
path = {q(str(state / "purge-ledger.jsonl"))}

[service]
data_dir = {q(str(state))}
status_path = {q(str(state / "status.json"))}
"""


def _owned_keys(a: Answers) -> dict[tuple[str, str], str]:
    """(section, key) -> value for every key provisioning owns (see :func:`merge_config`)."""
    owned = {
        ("device", "id"): a.device_id,
        ("camera", "source"): a.camera,
        ("matcher", "target"): a.matcher,
        ("serial", "port"): a.serial_port,
        ("flight", "carrier"): a.carrier,
        ("flight", "number"): a.flight,
        ("flight", "date"): a.date,
        ("flight", "airport"): a.airport,
        ("flight", "gate"): a.gate,
        ("capture", "mode"): a.mode,
    }
    if a.enroll:
        owned[("matcher", "enroll_target")] = a.enroll
    if a.scanner:
        owned[("scanner", "port")] = a.scanner
    return owned


def merge_config(current: str, a: Answers) -> str:
    """``current`` with the answers merged in: a key provisioning owns is set only where
    its answer differs; every other key, comment and section stays as it is."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        document = tomlkit.parse(current)
    except (TOMLKitError, RecursionError) as exc:
        raise ProvisionError(f"the configuration is not readable TOML: {exc}") from exc
    for (section, key), value in _owned_keys(a).items():
        table = document.get(section)
        if table is None:
            table = tomlkit.table()
            document[section] = table
        if table.get(key) != value:
            table[key] = value
    return tomlkit.dumps(document)


def config_diff(path: Path, old: str, new: str) -> list[str]:
    """The unified diff of the configuration file, as the technician reads it."""
    return list(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile=f"{path} (now)",
            tofile=f"{path} (to be written)",
            lineterm="",
        )
    )


def backup_path(path: Path, now: dt.datetime | None = None) -> Path:
    now = now or dt.datetime.now(dt.UTC)
    return path.with_name(f"{path.name}.bak-{now:%Y%m%dT%H%M%S%fZ}")


# ------------------------------------------------------------------------------ the steps


class _Run:
    def __init__(self, out: Callable[[str], object], dry_run: bool, total: int) -> None:
        self.out = out
        self.dry_run = dry_run
        self.total = total
        self.number = 0
        self.changes: list[str] = []

    def step(self, title: str, result: str, changed: bool = False) -> None:
        self.number += 1
        mark = "would " if (changed and self.dry_run) else ""
        self.out(f"[{self.number}/{self.total}] {title:<34} {mark}{result}")
        if changed:
            self.changes.append(title)


def _chmod_tree(root: Path) -> None:
    os.chmod(root, 0o700)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o700)
        for name in files:
            os.chmod(Path(folder) / name, 0o600)


def _ensure_dir(path: Path, dry_run: bool, created: list[str]) -> None:
    if path.is_dir():
        return
    created.append(str(path))
    if not dry_run:
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)


def _certificate_serial(pki_root: Path) -> int | None:
    from cryptography import x509

    from gate_contract.keys import PkiLayout

    try:
        pem = PkiLayout(pki_root).device_cert.read_bytes()
        return x509.load_pem_x509_certificates(pem)[0].serial_number
    except (OSError, ValueError, IndexError):
        return None


def enrollment_state(pki_root: Path, device_id: str, ca_pem: bytes) -> tuple[bool, str]:
    """(usable, why) for an existing device PKI folder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from gate_contract.keys import PkiLayout, load_private

    layout = PkiLayout(pki_root)
    needed = (
        layout.ca_cert,
        layout.device_cert,
        layout.device_key,
        layout.sealing_public,
        layout.signing_public,
    )
    if not all(p.is_file() for p in needed):
        return False, "not enrolled"
    try:
        cert = x509.load_pem_x509_certificates(layout.device_cert.read_bytes())[0]
        key = load_private(layout.device_key)
    except (OSError, ValueError) as exc:
        return False, f"unreadable device certificate or key: {exc}"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != device_id:
        name = names[0].value if names else "?"
        return False, f"enrolled as {name!r}, not {device_id!r}"
    if layout.ca_cert.read_bytes().strip() != ca_pem.strip():
        return False, "enrolled under another CA"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if cert.public_key().public_bytes(pem, spki) != key.public_key().public_bytes(pem, spki):
        return False, "device key does not match its certificate"
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False, "certificate expired or not yet valid"
    days = (cert.not_valid_after_utc - now).days
    return True, f"enrolled as {device_id}, certificate valid {days} more days"


def provision(
    a: Answers,
    *,
    dry_run: bool = False,
    rotate: bool = False,
    owner: str | None = None,
    out: Callable[[str], object] = print,
    check_matcher: bool = True,
) -> list[str]:
    """Run every step; returns the titles of the steps that changed something."""
    from appliance.errors import EnrollmentFailed
    from appliance.matching.enrollment import enroll

    run = _Run(out, dry_run, total=7 if rotate else 6)
    old_umask = os.umask(0o077)
    try:
        check_answers(a)
        state = Path(a.data_dir).expanduser().resolve() if a.data_dir else data_dir()
        a.data_dir = str(state)
        config_path = Path(a.config).expanduser().absolute()
        a.config = str(config_path)
        current = config_path.read_text(encoding="utf-8") if config_path.is_file() else None
        text = render_config(a, state) if current is None else merge_config(current, a)
        config = _check_config(text, config_path, state, dry_run)
        run.step("check answers", f"ok ({a.device_id}, {a.carrier}{a.flight} {a.date})")
        warning = past_date_warning(a)
        if warning:
            out(warning)

        pki_root = config.matcher.pki_dir
        relay = config.serial.relay_key_file
        created: list[str] = []
        for folder in (state, pki_root, config_path.parent):
            _ensure_dir(folder, dry_run, created)
        if not dry_run:
            for folder in (state, pki_root):
                if folder.is_dir() and folder.stat().st_mode & 0o077:
                    os.chmod(folder, 0o700)
        if created:
            run.step("directories", "create " + ", ".join(created), changed=True)
        else:
            run.step("directories", "unchanged")

        ca_pem = Path(a.ca_file).expanduser().read_bytes()
        usable, why = enrollment_state(pki_root, a.device_id, ca_pem)
        title = "device key and certificate"
        if usable and not rotate:
            run.step(title, f"unchanged ({why})")
        else:
            if not usable and not rotate and why != "not enrolled":
                raise ProvisionError(
                    f"this unit is {why}; re-run with --rotate and a new token to re-enrol"
                )
            if not a.token:
                raise ProvisionError(
                    "--token (token): a one-time enrollment token is needed; issue one with"
                    f" `gate-matcher issue-token --device-id {a.device_id}`"
                )
            if not a.enroll:
                raise ProvisionError(
                    "--enroll (enroll): the enrollment service's host:port is needed to enrol"
                )
            old_serial = _certificate_serial(pki_root) if usable else None
            aside = pki_root.with_name(f"pki.old-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}")
            action = f"enrol at {a.enroll} (new key + CSR)"
            if usable or any(pki_root.glob("*")):
                action += f"; old keys to {aside.name}"
            if not dry_run:
                staging = Path(tempfile.mkdtemp(prefix=".pki-staging-", dir=state))
                try:
                    enroll(a.enroll, ca_pem, a.token, a.device_id, staging, airport=a.airport)
                    _chmod_tree(staging)
                    if pki_root.exists() and any(pki_root.iterdir()):
                        pki_root.rename(aside)
                        _chmod_tree(aside)
                    elif pki_root.exists():
                        pki_root.rmdir()
                    staging.rename(pki_root)
                except EnrollmentFailed as exc:
                    raise ProvisionError(str(exc)) from exc
                finally:
                    if staging.exists():
                        shutil.rmtree(staging, ignore_errors=True)
            run.step(title, action, changed=True)
            if old_serial is not None and not dry_run:
                out(
                    f"revoke the old certificate (serial {old_serial:#x}) on the matching"
                    f" service: `gate-matcher revoke --revocations FILE --serial {old_serial:#x}`"
                )

        if relay.exists():
            try:
                read_relay_key(relay)
            except ConfigError as exc:
                raise ProvisionError(
                    f"relay key {relay} exists but is unusable ({exc}); it is shared with the"
                    " gate MCU: restore it, or remove it and re-key the MCU"
                ) from exc
            if relay.stat().st_mode & 0o077:
                if not dry_run:
                    os.chmod(relay, 0o600)
                run.step("relay key", f"permissions set to 0600 ({relay})", changed=True)
            else:
                run.step("relay key", f"unchanged ({relay})")
        else:
            if not dry_run:
                write_private(relay, (secrets.token_bytes(RELAY_KEY_BYTES).hex() + "\n").encode())
            run.step("relay key", f"create {relay} (0600)", changed=True)
        if rotate:
            _new_counter_epoch(run, a.serial_port, relay, dry_run)

        if current == text:
            if config_path.stat().st_mode & 0o077 and not dry_run:
                os.chmod(config_path, 0o600)
            run.step("configuration file", f"unchanged ({config_path})")
        else:
            if current is not None or dry_run:  # a new file is not a change to read
                for line in config_diff(config_path, current or "", text):
                    out(line)
            if current is None:
                result = f"write {config_path} (0600)"
            else:
                backup = backup_path(config_path)
                result = f"update {config_path} (0600; the old one kept as {backup.name})"
                if not dry_run:
                    write_private(backup, current.encode())
            if not dry_run:
                write_private(config_path, text.encode())
                check_service_config(load_config(config_path))  # exactly as the service
            run.step("configuration file", result, changed=True)

        if owner and not dry_run and run.changes:
            _chown(owner, [state, config_path])
        if dry_run or not check_matcher:
            run.step("matching service (mutual TLS)", "skipped" if not dry_run else "check")
        else:
            run.step("matching service (mutual TLS)", _matcher_health(config_path))
    except ConfigError as exc:
        raise ProvisionError(f"configuration: {exc}") from exc
    finally:
        os.umask(old_umask)
    if dry_run:
        out(f"dry run: {len(run.changes)} step(s) would change something; nothing was written")
    elif run.changes:
        out(f"provisioned {a.device_id}: {', '.join(run.changes)} changed")
    else:
        out(f"nothing changed: {a.device_id} is already provisioned as asked")
    return run.changes


def _new_counter_epoch(run: _Run, port: str, relay: Path, dry_run: bool) -> None:
    """--rotate: the MCU's relay counter starts a new epoch (skipped if no MCU answers)."""
    from firmware_bridge.errors import (
        CommandRejected,
        CounterImplausible,
        LinkError,
        NotAuthentic,
    )
    from firmware_bridge.tools.counter_epoch import start_new_counter_epoch

    title = "relay counter epoch"
    if dry_run:
        run.step(title, f"start a new epoch on the gate MCU at {port}", changed=True)
        return
    try:
        done = start_new_counter_epoch(port, read_relay_key(relay))
    except (NotAuthentic, CounterImplausible, CommandRejected) as exc:
        raise ProvisionError(f"gate MCU on {port}: {exc}") from exc
    except LinkError as exc:  # nothing answered: the counter is as it was
        run.step(title, f"skipped: {exc} (stop the gate service, connect the MCU, rerun)")
        return
    run.step(title, done, changed=True)


def _check_config(text: str, config_path: Path, state: Path, dry_run: bool):
    """Parse the file to be written exactly as ``gatectl run`` will (a unit that is
    provisioned must start); before the relay key exists, a stand-in is lent."""
    from appliance.service.config import GateConfig

    document = parse_toml(text)
    base = config_path.parent
    serial = document.get("serial", {})
    named = serial.get("relay_key_file") if isinstance(serial, dict) else None
    relay = _resolve(named, base) if isinstance(named, str) else state / "relay.key"
    if relay.is_file():
        config: GateConfig = parse_config(document, base)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            stand_in = Path(tmp) / "relay.key"
            stand_in.write_text("00" * RELAY_KEY_BYTES)
            document["serial"]["relay_key_file"] = str(stand_in)
            config = parse_config(document, base)
            config = _replace_relay_path(config, relay)
    check_service_config(config)
    return config


def _replace_relay_path(config, relay: Path):
    import dataclasses

    return dataclasses.replace(
        config, serial=dataclasses.replace(config.serial, relay_key_file=relay)
    )


def _matcher_health(config_path: Path) -> str:
    from appliance.matching.client import MatchingClient
    from gate_contract.keys import PkiLayout

    config = load_config(config_path)
    try:
        client = MatchingClient(
            config.matcher.target, PkiLayout(config.matcher.pki_dir), config.device_id
        )
    except (OSError, ValueError) as exc:
        return f"WARN: cannot load the device PKI: {exc}"
    try:
        if client.health():
            return f"ok ({config.matcher.target} answers SERVING)"
        return f"WARN: {config.matcher.target} did not answer; run `gatectl selftest`"
    finally:
        client.close()


def _chown(owner: str, roots: list[Path]) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    entry = pwd.getpwnam(owner)
    for root in roots:
        paths = [root]
        if root.is_dir():
            for folder, dirs, files in os.walk(root):
                paths.extend(Path(folder) / n for n in (*dirs, *files))
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------- guided form


def ask(
    a: Answers,
    prompt: Callable[[str], str] = input,
    out: Callable[[str], object] = print,
    secret: Callable[[str], str] | None = None,
) -> Answers:
    """Ask every question with the current value as default (Enter keeps it), check each
    answer as it is typed and ask again until it is good. The token is read with
    ``secret`` (no echo on a terminal) and never shown. The scanner is asked for only
    when the capture mode needs one."""
    secret = secret or read_secret
    out("Gate provisioning. Press Enter to keep the value in [brackets].")
    for name, (question, _flag, _metavar) in QUESTIONS.items():
        if name == "scanner" and a.mode != Mode.PASS_THEN_FACE and not a.scanner:
            continue
        while True:
            current = getattr(a, name)
            if name == "token":
                shown = "(hidden)" if current else ""
                answer = secret(f"{question} [{shown}]: ").strip()
            else:
                answer = prompt(f"{question} [{current}]: ").strip()
            value = answer or current
            if name == "token" and not value:
                break  # not needed on an enrolled unit; provision says when it is
            try:
                setattr(a, name, check_answer(name, value))
            except ValueError as exc:
                out(f"  {exc}; try again")
                continue
            if name == "mode" and a.mode == Mode.PASS_THEN_FACE and not a.scanner:
                out("  pass_then_face needs a boarding-pass scanner: asked next")
            if name == "scanner" and a.mode == Mode.PASS_THEN_FACE and not a.scanner:
                out("  pass_then_face needs a scanner; try again")
                continue
            if name == "date":
                warning = past_date_warning(a)
                if warning:
                    out(f"  {warning}")
            break
    return a


def read_secret(prompt: str) -> str:
    """A line from standard input, not echoed when it is a terminal (the enrollment
    token must not stay on the screen or in a terminal's scroll-back)."""
    if not sys.stdin.isatty():
        return input(prompt)
    import termios

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO
    try:
        # Echo off before the prompt shows: a token pasted at once is not echoed either.
        termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write("\n")
    if not line:
        raise EOFError
    return line.rstrip("\n")


def confirm(prompt: Callable[[str], str] = input) -> bool:
    return prompt("Proceed? [Y/n]: ").strip().lower() in ("", "y", "yes")


__all__ = [
    "DEFAULT_CONFIG",
    "QUESTIONS",
    "RELAY_KEY_BYTES",
    "RENEW_BEFORE_DAYS",
    "Answers",
    "Question",
    "answer_errors",
    "answers_from_config",
    "ask",
    "backup_path",
    "check_answer",
    "check_answers",
    "config_diff",
    "confirm",
    "enrollment_state",
    "load_answers",
    "merge_config",
    "past_date_warning",
    "provision",
    "read_secret",
    "render_config",
]

"""``gatectl provision``: one command that turns a freshly installed unit into a gate.

Guided (prompts with defaults, on a terminal) or non-interactive (flags and/or a TOML
answers file; flags win). The steps, each with one progress line:

1. check the answers (every value, before anything is written; errors name the answer);
2. directories: the state directory and its ``pki`` folder, owner-only (0700);
3. relay key: the HMAC key the gate MCU shares, created once (0600) and never rotated
   here, since the MCU holds the same key; with ``--rotate`` the MCU's relay counter
   then starts a new epoch (``firmware_bridge.tools.counter_epoch``: the recovery of a
   used-up or poisoned counter; the gate service must be stopped, the port free);
4. device key and certificate: a new P-256 key and CSR made on the unit, enrolled with a
   one-time token against the matching service's enrollment port
   (``appliance.matching_client.enroll``); the certificate chain, the pinned CA and the
   service's sealing and verdict-signing public keys are stored in the
   ``appliance.pki.PkiLayout`` shape the service reads (files 0600, folders 0700);
5. the configuration file (TOML, 0600), checked with ``appliance.config.load_config``;
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
import os
import re
import secrets
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from appliance.errors import ConfigError, ProvisionError
from appliance.gate.workflow import Mode
from appliance.service.config import (
    load_config,
    parse_camera_source,
    parse_config,
    read_relay_key,
)
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
    matcher: str = ""
    enroll: str = ""
    ca_file: str = ""
    token: str = ""
    config: str = str(DEFAULT_CONFIG)
    data_dir: str = ""


# answer -> (prompt, command-line flag)
QUESTIONS: dict[str, tuple[str, str]] = {
    "device_id": ("Device id (as on the enrollment token)", "--device-id"),
    "airport": ("Departure airport (IATA, e.g. LAX)", "--airport"),
    "gate": ("Gate (e.g. B42)", "--gate"),
    "carrier": ("Carrier (IATA airline code, e.g. BA)", "--carrier"),
    "flight": ("Flight number (e.g. 0283)", "--flight"),
    "date": ("Flight date (YYYY-MM-DD)", "--date"),
    "camera": ("Camera source (picamera2 | opencv:<index|path|url> | replay:<path>)", "--camera"),
    "serial_port": ("Serial port of the gate MCU", "--serial-port"),
    "mode": (f"Capture mode ({' | '.join(Mode)})", "--mode"),
    "matcher": ("Matching service (host:port, mutual TLS)", "--matcher"),
    "enroll": ("Enrollment service (host:port, server TLS)", "--enroll"),
    "ca_file": ("CA certificate file from the provisioning kit", "--ca-file"),
    "token": ("One-time enrollment token (not needed if already enrolled)", "--token"),
    "config": ("Configuration file to write", "--config"),
    "data_dir": ("State directory (keys, ledger, status)", "--data-dir"),
}

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_AIRPORT = re.compile(r"^[A-Z]{3}$")
_CARRIER = re.compile(r"^[A-Z0-9]{2,3}$")
_FLIGHT = re.compile(r"^[0-9]{1,4}[A-Z]?$")
_GATE = re.compile(r"^[A-Za-z0-9-]{1,8}$")


def load_answers(path: Path) -> dict[str, str]:
    """An answers file: a TOML table of the answer names (``device_id = "..."``)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProvisionError(f"answers file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
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


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdecimal() and 1 <= int(port) <= 65535)


def check_answers(a: Answers) -> None:
    """Raise ``ProvisionError`` naming the first bad answer and what it may be."""

    def bad(name: str, why: str) -> ProvisionError:
        return ProvisionError(f"{QUESTIONS[name][1]} ({name}) = {getattr(a, name)!r}: {why}")

    if not _DEVICE_ID.match(a.device_id):
        raise bad("device_id", "1..64 letters, digits, '.', '_' or '-'")
    if not _AIRPORT.match(a.airport):
        raise bad("airport", "three capital letters (IATA airport code)")
    if not _GATE.match(a.gate):
        raise bad("gate", "1..8 letters, digits or '-'")
    if not _CARRIER.match(a.carrier):
        raise bad("carrier", "two or three capital letters or digits (IATA airline code)")
    if not _FLIGHT.match(a.flight):
        raise bad("flight", "1..4 digits and an optional letter")
    try:
        dt.date.fromisoformat(a.date)
    except ValueError:
        raise bad("date", "an ISO date, YYYY-MM-DD") from None
    try:
        parse_camera_source(a.camera, Path.cwd(), key="camera")
    except ConfigError as exc:
        raise ProvisionError(f"--camera (camera): {exc}") from None
    if not a.serial_port.strip() or "\x00" in a.serial_port:
        raise bad("serial_port", "a serial device path, e.g. /dev/ttyACM0")
    if a.mode not in tuple(Mode):
        raise bad("mode", f"one of {', '.join(Mode)}")
    for name in ("matcher", "enroll"):
        if not _host_port(getattr(a, name)):
            raise bad(name, "host:port with a port in 1..65535")
    if not a.ca_file:
        raise bad("ca_file", "the CA certificate (PEM) from the provisioning kit is needed")
    try:
        from cryptography import x509

        x509.load_pem_x509_certificate(Path(a.ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise bad("ca_file", f"not a readable PEM certificate ({exc})") from None
    if not a.config:
        raise bad("config", "a path for the configuration file")


# ------------------------------------------------------------------------------ rendering


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_config(a: Answers, state: Path) -> str:
    """The configuration file for these answers (paths absolute, in the state dir)."""
    q = _toml_string
    return f"""# Written by `gatectl provision` for {a.device_id}. Re-run provision to change it;
# check it with `gatectl selftest --config {a.config}`.

[device]
id = {q(a.device_id)}

[camera]
source = {q(a.camera)}

[matcher]
target = {q(a.matcher)}
pki_dir = {q(str(state / "pki"))}

[serial]
port = {q(a.serial_port)}
relay_key_file = {q(str(state / "relay.key"))}

[flight]
carrier = {q(a.carrier)}
number = {q(a.flight)}
date = {q(a.date)}
airport = {q(a.airport)}
gate = {q(a.gate)}

[capture]
mode = {q(a.mode)}

[ledger]
path = {q(str(state / "purge-ledger.jsonl"))}

[service]
status_path = {q(str(state / "status.json"))}
"""


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

    state = Path(a.data_dir).expanduser().resolve() if a.data_dir else data_dir()
    a.data_dir = str(state)
    config_path = Path(a.config).expanduser().absolute()
    a.config = str(config_path)
    run = _Run(out, dry_run, total=7 if rotate else 6)
    old_umask = os.umask(0o077)
    try:
        check_answers(a)
        run.step("check answers", f"ok ({a.device_id}, {a.carrier}{a.flight} {a.date})")

        created: list[str] = []
        for folder in (state, state / "pki", config_path.parent):
            _ensure_dir(folder, dry_run, created)
        if not dry_run:
            for folder in (state, state / "pki"):
                if folder.is_dir() and folder.stat().st_mode & 0o077:
                    os.chmod(folder, 0o700)
        if created:
            run.step("directories", "create " + ", ".join(created), changed=True)
        else:
            run.step("directories", "unchanged")

        pki_root = state / "pki"
        ca_pem = Path(a.ca_file).read_bytes()
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
                    raise ProvisionError(
                        f"{exc}. Check the token: it is single use, expires, and is bound to"
                        f" device id {a.device_id!r} (issue a new one if in doubt)"
                    ) from exc
                finally:
                    if staging.exists():
                        shutil.rmtree(staging, ignore_errors=True)
            run.step(title, action, changed=True)

        relay = state / "relay.key"
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

        text = render_config(a, state)
        _check_rendered(text, state, dry_run)
        if config_path.is_file() and config_path.read_text(encoding="utf-8") == text:
            if config_path.stat().st_mode & 0o077 and not dry_run:
                os.chmod(config_path, 0o600)
            run.step("configuration file", f"unchanged ({config_path})")
        else:
            verb = "update" if config_path.exists() else "write"
            if not dry_run:
                write_private(config_path, text.encode())
                load_config(config_path)  # must load exactly as the service will
            run.step("configuration file", f"{verb} {config_path} (0600)", changed=True)

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


def _check_rendered(text: str, state: Path, dry_run: bool) -> None:
    """Parse the rendered file exactly as the service will (a dry run lends a relay key)."""
    document = tomllib.loads(text)
    if dry_run and not (state / "relay.key").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "relay.key"
            key.write_text("00" * RELAY_KEY_BYTES)
            document["serial"]["relay_key_file"] = str(key)
            parse_config(document, state)
        return
    parse_config(document, state)


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


def ask(a: Answers, prompt: Callable[[str], str] = input, out: Callable[[str], object] = print):
    """Ask every question with the current value as default; Enter keeps it."""
    out("Gate provisioning. Press Enter to keep the value in [brackets].")
    for name, (question, _flag) in QUESTIONS.items():
        current = getattr(a, name)
        shown = "(hidden)" if name == "token" and current else current
        answer = prompt(f"{question} [{shown}]: ").strip()
        if answer:
            setattr(a, name, answer)
    return a


def confirm(prompt: Callable[[str], str] = input) -> bool:
    return prompt("Proceed? [Y/n]: ").strip().lower() in ("", "y", "yes")


__all__ = [
    "DEFAULT_CONFIG",
    "QUESTIONS",
    "RELAY_KEY_BYTES",
    "RENEW_BEFORE_DAYS",
    "Answers",
    "ask",
    "check_answers",
    "confirm",
    "enrollment_state",
    "load_answers",
    "provision",
    "render_config",
]

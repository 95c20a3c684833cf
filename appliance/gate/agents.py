"""Who may act at the gate as an agent, how they prove it, and the reasons they give.

The unit keeps one registry of its agents (``[agents] file``: JSON, mode 0600, refused
when others can read it), managed with ``gatectl agents``. Each entry may hold:

* a **public key** (Ed25519): the agent acts at the barcode scanner with a *signed
  action* their handheld shows, ``<prefix><agent>:<COMMAND>:<issued_s>:<scope>:<nonce>:
  <signature>``: COMMAND is RELEASE, CANCEL or OPTOUT; ``issued_s`` is when it was made
  and it is good for ``action_ttl_s`` (60 s) and once only, across restarts; ``scope`` is
  this gate's device id (RELEASE and CANCEL must name the gate, so that a photographed
  action cannot open the next gate along), or for OPTOUT also the airport it boards at;
  ``nonce`` keeps two actions in one second apart; the signature covers all of it
  (:meth:`AgentRegistry.verify_action`);
* a **PIN** (salted scrypt): the agent logs in at the agent station
  (:class:`PinAuthenticator`); after ``MAX_FAILURES`` wrong PINs in a row an id is locked
  for ``LOCKOUT_S``, unknown ids the same way and at the same cost, so neither the answer
  nor its timing tells a guesser which ids exist;
* a last valid day (``valid_until``).

Plain badges (``AGT:4711:RELEASE``) are refused: text anyone can print never opens the
gate. With no registry provisioned no agent can act at all: that is the safe default.
Every way of acting asks an :class:`AgentAuthenticator` (the station: ``verify(agent_id,
credential)`` -> :class:`Agent` or :class:`Refusal`), and every action carries a reason
code from a closed list (:class:`ReleaseReason`, :class:`CancelReason`).
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import ConfigError
from gate_contract.documents import parse_json
from gate_contract.files import append_line, write_private

log = logging.getLogger(__name__)

AGENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
PIN_RE = re.compile(r"[0-9]{4,12}")  # what a PIN entry can be; badge tokens are longer text
MIN_NEW_PIN_DIGITS = 6
MAX_CREDENTIAL_CHARS = 4096
MAX_FAILURES = 5
LOCKOUT_S = 60.0
TRACKED_IDS = 1024  # failure counters kept (oldest forgotten first)
ACTION_TTL_S = 60.0
_SCOPE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONCE_RE = re.compile(r"[0-9a-f]{8}")
_ACTION_DOMAIN = b"gate agent action v1\n"

# scrypt cost: 16 MiB and about 50 ms per check on one core of the unit.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
_SCHEME = "scrypt"


class AuthMethod(enum.StrEnum):
    PIN = "pin"
    BADGE = "badge"


@dataclass(frozen=True)
class Agent:
    """An authenticated agent (who, and how they proved it)."""

    agent_id: str
    method: AuthMethod
    airline: str = ""


class RefusalReason(enum.StrEnum):
    MALFORMED = "malformed"  # not an agent id, or not a PIN / token at all
    WRONG_CREDENTIAL = "wrong_credential"  # unknown id or wrong PIN (never told apart)
    LOCKED = "locked"  # too many wrong PINs for this id: try again later
    EXPIRED = "expired"  # a registration past its last valid day
    NOT_CONFIGURED = "not_configured"  # this kind of credential is not set up here


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    message: str
    retry_after_s: float = 0.0


class AgentAuthenticator(Protocol):
    """What the agent station asks."""

    def verify(self, agent_id: str, credential: str) -> Agent | Refusal: ...


class ReleaseReason(enum.StrEnum):
    """Why an agent opened the gate by hand."""

    DOCUMENTS_CHECKED = "documents_checked"  # after an opt-out: documents checked by hand
    IDENTITY_CONFIRMED = "identity_confirmed"  # after a referral: the agent confirmed identity
    ASSISTED_BOARDING = "assisted_boarding"  # wheelchair, family with children


class CancelReason(enum.StrEnum):
    """Why an agent ended a traveller's turn without boarding."""

    TRAVELLER_LEFT = "traveller_left"
    NOT_BOARDING = "not_boarding"  # refused boarding, wrong gate, sent to the desk
    START_AGAIN = "start_again"  # rescan the pass, capture again


class AgentCommand(enum.StrEnum):
    RELEASE = "RELEASE"
    CANCEL = "CANCEL"
    OPTOUT = "OPTOUT"


@dataclass(frozen=True)
class AgentAction:
    """An authenticated agent action at the scanner (signature checked, fresh, unused)."""

    agent_id: str
    command: AgentCommand


class AgentRefused(ValueError):
    """Why a scanned agent action is not taken (never echoes the token)."""

    def __init__(self, reason: str, agent_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.agent_id = agent_id


# --- PINs --------------------------------------------------------------------------------


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=128 * r * n * 2
    )


def hash_pin(pin: str) -> str:
    """``scrypt$N$r$p$<salt hex>$<hash hex>`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN)
    return f"{_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


@dataclass(frozen=True)
class _PinHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> _PinHash:
        parts = text.split("$") if isinstance(text, str) else []
        if len(parts) != 6 or parts[0] != _SCHEME:
            raise ValueError("not a scrypt$N$r$p$salt$hash entry")
        n, r, p = (int(v) for v in parts[1:4])
        if n < 2**10 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError("scrypt parameters out of range")
        salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
        if len(salt) < 16 or len(digest) < 16:
            raise ValueError("salt or hash too short")
        return cls(n, r, p, salt, digest)

    def matches(self, pin: str) -> bool:
        got = _scrypt(pin, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(got, self.digest)


# A hash nobody's PIN matches: unknown ids cost the same work as known ones.
_DUMMY = _PinHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"\x00" * 16, b"\x00" * SCRYPT_LEN)


def check_new_pin(pin: str) -> None:
    """A PIN an agent may choose: 6 to 12 digits, not one digit repeated."""
    if not re.fullmatch(rf"[0-9]{{{MIN_NEW_PIN_DIGITS},12}}", pin):
        raise ValueError(f"a PIN is {MIN_NEW_PIN_DIGITS} to 12 digits")
    if len(set(pin)) == 1:
        raise ValueError("a PIN must not be one digit repeated")


# --- the registry ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


@dataclass(frozen=True)
class AgentEntry:
    """One agent of the registry: what they may prove themselves with, until when."""

    agent_id: str
    public_key: Ed25519PublicKey | None = None  # signs their actions at the scanner
    pin_hash: str = ""  # their station login; "" = none
    valid_until: dt.date | None = None

    def valid_on(self, day: dt.date) -> bool:
        return self.valid_until is None or day <= self.valid_until


def _message(agent_id: str, command: str, issued_s: int, scope: str, nonce: str) -> bytes:
    fields = (agent_id, command, str(issued_s), scope, nonce)
    return _ACTION_DOMAIN + "\n".join(fields).encode("ascii")


def sign_action(
    key: Ed25519PrivateKey,
    agent_id: str,
    command: AgentCommand,
    scope: str,
    *,
    issued_s: int | None = None,
    prefix: str = "AGT:",
) -> str:
    """The barcode text of one action (what the agent's handheld makes)."""
    issued = int(time.time()) if issued_s is None else issued_s
    nonce = secrets.token_hex(4)
    signature = key.sign(_message(agent_id, command.value, issued, scope, nonce))
    return f"{prefix}{agent_id}:{command.value}:{issued}:{scope}:{nonce}:{_b64(signature)}"


def _entry_from(agent_id: str, row: object) -> AgentEntry:
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise ValueError(f"{agent_id!r} is not an agent id")
    if not isinstance(row, dict):
        raise ValueError(f"entry of {agent_id}: expected an object")
    key_text = row.get("public_key")
    key = Ed25519PublicKey.from_public_bytes(_unb64(str(key_text))) if key_text else None
    pin = str(row.get("pin") or "")
    if pin:
        try:
            _PinHash.parse(pin)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"entry of {agent_id}: {exc}") from exc
    until = row.get("valid_until")
    try:
        valid_until = dt.date.fromisoformat(str(until)) if until else None
    except ValueError as exc:
        raise ValueError(f"entry of {agent_id}: valid_until: {exc}") from exc
    return AgentEntry(agent_id, key, pin, valid_until)


class AgentRegistry:
    """The agents of this unit, and the check of each action scanned at its gate.

    :meth:`verify_action` remembers each accepted action until it would have expired, so
    an action is taken once. With ``used_path`` the memory is durable (one fsynced line per
    action, a hash of its signature, before it is taken; an action that cannot be recorded
    is refused), so a restart forgets nothing an attacker could replay.
    """

    def __init__(
        self,
        agents: Mapping[str, AgentEntry] | None = None,
        *,
        device: str = "",
        airport: str = "",
        ttl_s: float = ACTION_TTL_S,
        clock: Callable[[], float] = time.time,
        path: Path | None = None,
        used_path: Path | None = None,
    ) -> None:
        self.agents = dict(agents or {})
        self.device = device
        self.airport = airport
        self.ttl_s = ttl_s
        self.path = path
        self.used_path = used_path
        self._clock = clock
        self._used: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._load_used()

    @classmethod
    def load(cls, path: Path, **options) -> AgentRegistry:
        """The registry in ``path``; no file is an empty registry (nobody may act).

        A damaged file, or one others can read, is a :class:`ConfigError` naming it.
        """
        if not path.exists():
            return cls({}, path=path, **options)
        try:
            mode = path.stat().st_mode
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read agent registry {path}: {exc}") from exc
        if mode & 0o077:
            raise ConfigError(f"agent registry {path} is readable by others: chmod 600 it")
        try:
            document = parse_json(raw.decode("utf-8"))
        except ValueError as exc:  # not UTF-8, not JSON, or nested too deeply
            raise ConfigError(f"agent registry {path} is not JSON: {exc}") from exc
        rows = document.get("agents") if isinstance(document, dict) else None
        if not isinstance(rows, dict):
            raise ConfigError(f'agent registry {path}: expected {{"agents": {{id: entry}}}}')
        agents = {}
        for agent_id, row in rows.items():
            try:
                agents[agent_id] = _entry_from(agent_id, row)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"agent registry {path}: {exc}") from exc
        return cls(agents, path=path, **options)

    def save(self, path: Path | None = None) -> None:
        target = path or self.path
        if target is None:
            raise ValueError("no file to save the agent registry to")
        rows = {
            e.agent_id: {
                "public_key": public_key_text(e.public_key) if e.public_key else None,
                "pin": e.pin_hash or None,
                "valid_until": e.valid_until.isoformat() if e.valid_until else None,
            }
            for e in sorted(self.agents.values(), key=lambda e: e.agent_id)
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        write_private(target, (json.dumps({"agents": rows}, indent=1) + "\n").encode())

    def pin_hashes(self) -> dict[str, str]:
        """Agent id -> PIN hash of the agents who may log in at the station today."""
        today = dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()
        return {
            a.agent_id: a.pin_hash for a in self.agents.values() if a.pin_hash and a.valid_on(today)
        }

    def verify_action(self, body: str) -> AgentAction:
        """Check one scanned action (the text after the prefix); raises ``AgentRefused``."""
        parts = body.strip().split(":")
        if len(parts) != 6:
            raise AgentRefused("agent badge is not a signed action (see gatectl agents)")
        agent_id, command_text, issued_text, scope, nonce, signature_text = parts
        if not AGENT_ID_RE.fullmatch(agent_id):
            raise AgentRefused("agent action without a valid agent id")
        try:
            command = AgentCommand(command_text.upper())
        except ValueError:
            known = ", ".join(c.value for c in AgentCommand)
            raise AgentRefused(f"unknown agent command (known: {known})", agent_id) from None
        well_formed = (
            issued_text.isdecimal() and _SCOPE_RE.fullmatch(scope) and _NONCE_RE.fullmatch(nonce)
        )
        if not well_formed:
            raise AgentRefused("agent action is malformed", agent_id)
        entry = self.agents.get(agent_id)
        if entry is None or entry.public_key is None:
            raise AgentRefused("agent not registered on this unit", agent_id)
        now = self._clock()
        if not entry.valid_on(dt.datetime.fromtimestamp(now, dt.UTC).date()):
            raise AgentRefused("agent's registration has expired", agent_id)
        if command in (AgentCommand.RELEASE, AgentCommand.CANCEL):
            if not self.device or scope != self.device:
                raise AgentRefused("a release or cancel must name this gate's device id", agent_id)
        elif scope not in {self.device, self.airport} - {""}:
            raise AgentRefused("agent action is for another gate or airport", agent_id)
        issued = int(issued_text)
        try:
            signature = _unb64(signature_text)
            entry.public_key.verify(
                signature, _message(agent_id, command.value, issued, scope, nonce)
            )
        except (ValueError, InvalidSignature):
            raise AgentRefused("agent action signature does not verify", agent_id) from None
        if issued > now + 5 or now - issued > self.ttl_s:
            raise AgentRefused("agent action has expired (or comes from the future)", agent_id)
        digest = hashlib.sha256(signature).digest()
        with self._lock:
            for used, at in list(self._used.items()):
                if now - at > self.ttl_s + 10:
                    del self._used[used]
            if digest in self._used:
                raise AgentRefused("agent action was already used", agent_id)
            if not self._record_used(digest, now):
                raise AgentRefused("agent action cannot be recorded as used: refused", agent_id)
            self._used[digest] = now
        return AgentAction(agent_id, command)

    def _record_used(self, digest: bytes, now: float) -> bool:
        if self.used_path is None:
            return True
        line = json.dumps({"used": digest.hex(), "at_s": round(now, 3)}).encode() + b"\n"
        try:
            append_line(self.used_path, line)
        except OSError as exc:
            log.error("used agent actions %s not written: %s", self.used_path, exc)
            return False
        return True

    def _load_used(self) -> None:
        """Take in the actions used within their lifetime; rewrite the file without the rest."""
        if self.used_path is None or not self.used_path.exists():
            return
        now = self._clock()
        try:
            lines = self.used_path.read_bytes().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read used agent actions {self.used_path}: {exc}") from exc
        for line in lines:
            try:
                entry = parse_json(line)
                digest, at = bytes.fromhex(entry["used"]), float(entry["at_s"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line (a crash mid-append)
            if now - at <= self.ttl_s + 10:
                self._used[digest] = at
        kept = b"".join(
            json.dumps({"used": d.hex(), "at_s": round(at, 3)}).encode() + b"\n"
            for d, at in self._used.items()
        )
        write_private(self.used_path, kept)


# --- editing the registry file (gatectl agents) ---------------------------------------


def _edit(path: Path, agent_id: str, change: Callable[[AgentEntry], AgentEntry]) -> None:
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise ValueError(f"{agent_id!r} is not an agent id (1-32 of A-Z a-z 0-9 _ -)")
    registry = AgentRegistry.load(path)
    registry.agents[agent_id] = change(registry.agents.get(agent_id) or AgentEntry(agent_id))
    registry.save(path)


def set_pin(path: Path, agent_id: str, pin: str) -> None:
    """Add an agent or change their station PIN in ``path`` (created 0600 if missing)."""
    check_new_pin(pin)
    _edit(path, agent_id, lambda entry: replace(entry, pin_hash=hash_pin(pin)))


def set_key(
    path: Path, agent_id: str, key: Ed25519PublicKey, valid_until: dt.date | None = None
) -> None:
    """Add an agent or change the key their signed actions are checked with."""
    _edit(path, agent_id, lambda entry: replace(entry, public_key=key, valid_until=valid_until))


def remove_agent(path: Path, agent_id: str) -> bool:
    registry = AgentRegistry.load(path)
    if registry.agents.pop(agent_id, None) is None:
        return False
    registry.save(path)
    return True


def read_pin_file(path: Path) -> dict[str, str]:
    """Agent id -> PIN hash from the registry in ``path`` (:class:`ConfigError` if it is
    missing or damaged)."""
    if not path.exists():
        raise ConfigError(f"agent registry {path} does not exist (gatectl agents set-pin)")
    return AgentRegistry.load(path).pin_hashes()


# --- the station's login ----------------------------------------------------------------


class _Lockout:
    """Consecutive failures per agent id, bounded; a locked id is refused until it expires."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def attempt(self, agent_id: str) -> float:
        """Count one attempt *before* it is checked (so concurrent guesses are counted
        too); seconds to wait if the id is locked, else 0 and the attempt is reserved."""
        with self._lock:
            count, until = self._failures.pop(agent_id, (0, 0.0))
            wait = until - self._clock()
            if wait > 0:
                self._failures[agent_id] = (count, until)
                return wait
            count += 1
            until = self._clock() + LOCKOUT_S if count >= MAX_FAILURES else 0.0
            self._failures[agent_id] = (0 if until else count, until)
            while len(self._failures) > TRACKED_IDS:
                self._failures.popitem(last=False)
            return 0.0

    def succeeded(self, agent_id: str) -> None:
        with self._lock:
            self._failures.pop(agent_id, None)


class PinAuthenticator:
    """Checks agent PINs against salted scrypt hashes, with a lockout."""

    def __init__(
        self,
        hashes: Mapping[str, str],
        *,
        valid_until: Mapping[str, dt.date] | None = None,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
    ) -> None:
        self._hashes = {agent: _PinHash.parse(entry) for agent, entry in hashes.items()}
        self._valid_until = dict(valid_until or {})
        self._today = today
        self._lockout = _Lockout(clock)

    @classmethod
    def from_file(cls, path: Path) -> PinAuthenticator:
        return cls(read_pin_file(path))

    def verify(self, agent_id: str, credential: str) -> Agent | Refusal:
        if not isinstance(agent_id, str) or not AGENT_ID_RE.fullmatch(agent_id):
            return Refusal(RefusalReason.MALFORMED, "not an agent id")
        if not isinstance(credential, str) or not PIN_RE.fullmatch(credential):
            return Refusal(RefusalReason.MALFORMED, "a PIN is 4 to 12 digits")
        wait = self._lockout.attempt(agent_id)
        if wait > 0:
            return Refusal(RefusalReason.LOCKED, "too many wrong PINs: try again later", wait)
        known = self._hashes.get(agent_id)
        ok = (known or _DUMMY).matches(credential) and known is not None
        if not ok:
            return Refusal(RefusalReason.WRONG_CREDENTIAL, "wrong agent id or PIN")
        self._lockout.succeeded(agent_id)
        last_day = self._valid_until.get(agent_id)
        if last_day is not None and self._today() > last_day:
            return Refusal(RefusalReason.EXPIRED, "this agent's registration has expired")
        return Agent(agent_id, AuthMethod.PIN)


class AgentCredentials:
    """The station's authenticator: PINs to ``pins``, anything else to ``badges``."""

    def __init__(
        self,
        pins: AgentAuthenticator | None = None,
        badges: AgentAuthenticator | None = None,
    ) -> None:
        self.pins = pins
        self.badges = badges

    def verify(self, agent_id: str, credential: str) -> Agent | Refusal:
        if not isinstance(credential, str) or not credential:
            return Refusal(RefusalReason.MALFORMED, "no PIN or badge given")
        if len(credential) > MAX_CREDENTIAL_CHARS:
            return Refusal(RefusalReason.MALFORMED, "credential too long")
        if credential.isdigit():
            if self.pins is None:
                return Refusal(RefusalReason.NOT_CONFIGURED, "PIN login is not set up here")
            return self.pins.verify(agent_id, credential)
        if self.badges is None:
            return Refusal(RefusalReason.NOT_CONFIGURED, "signed badges are not set up here")
        return self.badges.verify(agent_id, credential)


def load_agent_credentials(
    registry: AgentRegistry, badges: AgentAuthenticator | None = None
) -> AgentCredentials:
    """The station's credentials: the PINs of ``registry`` (none: no PIN login)."""
    hashes = registry.pin_hashes()
    last_days = {a.agent_id: a.valid_until for a in registry.agents.values() if a.valid_until}
    pins = PinAuthenticator(hashes, valid_until=last_days) if hashes else None
    return AgentCredentials(pins, badges)


__all__ = [
    "ACTION_TTL_S",
    "AGENT_ID_RE",
    "LOCKOUT_S",
    "MAX_CREDENTIAL_CHARS",
    "MAX_FAILURES",
    "MIN_NEW_PIN_DIGITS",
    "PIN_RE",
    "TRACKED_IDS",
    "Agent",
    "AgentAction",
    "AgentAuthenticator",
    "AgentCommand",
    "AgentCredentials",
    "AgentEntry",
    "AgentRefused",
    "AgentRegistry",
    "AuthMethod",
    "CancelReason",
    "PinAuthenticator",
    "Refusal",
    "RefusalReason",
    "ReleaseReason",
    "check_new_pin",
    "hash_pin",
    "load_agent_credentials",
    "public_key_text",
    "read_pin_file",
    "remove_agent",
    "set_key",
    "set_pin",
    "sign_action",
]

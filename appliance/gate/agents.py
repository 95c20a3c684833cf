"""Who may act at the gate as an agent, how they prove it, and the reasons they give.

Every way an agent acts (a badge at the barcode scanner, a login at the agent station)
asks one :class:`AgentAuthenticator`: ``verify(agent_id, credential)`` returns the
:class:`Agent` or a :class:`Refusal` saying why not, and never raises for bad input.
:class:`AgentCredentials` is the one the service builds: a credential of digits only is
a PIN, checked by :class:`PinAuthenticator`; anything else is a signed badge token,
checked by the badge verifier the airline's keys provide (absent: refused).

PINs live in a provisioned file (``gatectl agents set-pin``; JSON, mode 0600, refused
when others can read it) as salted scrypt hashes, never in clear. After
``MAX_FAILURES`` wrong PINs in a row an agent id is locked for ``LOCKOUT_S``; ids that do
not exist are locked the same way and cost the same scrypt work, so neither the answer
nor its timing tells a guesser which ids are real.

Actions carry a reason code from a closed list (:class:`ReleaseReason`,
:class:`CancelReason`), written to the boarding log with the agent's id.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.errors import ConfigError
from gate_contract.files import write_private

AGENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
PIN_RE = re.compile(r"[0-9]{4,12}")  # what a PIN entry can be; badge tokens are longer text
MIN_NEW_PIN_DIGITS = 6
MAX_CREDENTIAL_CHARS = 4096
MAX_FAILURES = 5
LOCKOUT_S = 60.0
TRACKED_IDS = 1024  # failure counters kept (oldest forgotten first)

# scrypt cost: 16 MiB and about 50 ms per check on one core of the unit.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
_SCHEME = "scrypt"


class AuthMethod(enum.StrEnum):
    PIN = "pin"
    BADGE = "badge"


@dataclass(frozen=True)
class Agent:
    agent_id: str
    method: AuthMethod
    airline: str = ""  # set by the badge verifier (keys are provisioned per airline)


class RefusalReason(enum.StrEnum):
    MALFORMED = "malformed"  # not an agent id, or not a PIN / token at all
    WRONG_CREDENTIAL = "wrong_credential"  # unknown id or wrong PIN (never told apart)
    LOCKED = "locked"  # too many wrong PINs for this id: try again later
    EXPIRED = "expired"  # a badge past its expiry (badge verifier)
    NOT_CONFIGURED = "not_configured"  # this kind of credential is not set up here


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    message: str
    retry_after_s: float = 0.0


class AgentAuthenticator(Protocol):
    """What the scanner path and the agent station ask."""

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


# --- hashing -----------------------------------------------------------------------------


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


# --- the provisioned PIN file --------------------------------------------------------------


def check_new_pin(pin: str) -> None:
    """A PIN an agent may choose: 6 to 12 digits, not one digit repeated."""
    if not re.fullmatch(rf"[0-9]{{{MIN_NEW_PIN_DIGITS},12}}", pin):
        raise ValueError(f"a PIN is {MIN_NEW_PIN_DIGITS} to 12 digits")
    if len(set(pin)) == 1:
        raise ValueError("a PIN must not be one digit repeated")


def read_pin_file(path: Path) -> dict[str, str]:
    """Agent id -> PIN hash; :class:`ConfigError` naming what is wrong with the file."""
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"agent PIN file {path} does not exist (create it with gatectl agents set-pin)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read agent PIN file {path}: {exc}") from exc
    if mode & 0o077:
        raise ConfigError(f"agent PIN file {path} is readable by others: chmod 600 it")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"agent PIN file {path} is not JSON: {exc}") from exc
    agents = document.get("agents") if isinstance(document, dict) else None
    if not isinstance(agents, dict):
        raise ConfigError(f'agent PIN file {path}: expected {{"agents": {{id: hash}}}}')
    for agent_id, entry in agents.items():
        if not AGENT_ID_RE.fullmatch(agent_id):
            raise ConfigError(f"agent PIN file {path}: {agent_id!r} is not an agent id")
        try:
            _PinHash.parse(entry)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"agent PIN file {path}: entry of {agent_id}: {exc}") from exc
    return dict(agents)


def set_pin(path: Path, agent_id: str, pin: str) -> None:
    """Add or replace one agent's PIN in ``path`` (created 0600 if missing)."""
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise ValueError(f"{agent_id!r} is not an agent id (1-32 of A-Z a-z 0-9 _ -)")
    check_new_pin(pin)
    agents = read_pin_file(path) if path.exists() else {}
    agents[agent_id] = hash_pin(pin)
    _write(path, agents)


def remove_agent(path: Path, agent_id: str) -> bool:
    agents = read_pin_file(path)
    if agents.pop(agent_id, None) is None:
        return False
    _write(path, agents)
    return True


def _write(path: Path, agents: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"agents": dict(sorted(agents.items()))}, indent=1) + "\n"
    write_private(path, text.encode("utf-8"))


# --- verifying ---------------------------------------------------------------------------


class _Lockout:
    """Consecutive failures per agent id, bounded; a locked id is refused until it expires."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def locked_for(self, agent_id: str) -> float:
        with self._lock:
            _, until = self._failures.get(agent_id, (0, 0.0))
            return max(0.0, until - self._clock())

    def failed(self, agent_id: str) -> None:
        with self._lock:
            count, _ = self._failures.pop(agent_id, (0, 0.0))
            count += 1
            until = 0.0
            if count >= MAX_FAILURES:
                count, until = 0, self._clock() + LOCKOUT_S
            self._failures[agent_id] = (count, until)
            while len(self._failures) > TRACKED_IDS:
                self._failures.popitem(last=False)

    def succeeded(self, agent_id: str) -> None:
        with self._lock:
            self._failures.pop(agent_id, None)


class PinAuthenticator:
    """Checks agent PINs against salted scrypt hashes (``read_pin_file``)."""

    def __init__(
        self, hashes: Mapping[str, str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._hashes = {agent: _PinHash.parse(entry) for agent, entry in hashes.items()}
        self._lockout = _Lockout(clock)

    @classmethod
    def from_file(cls, path: Path) -> PinAuthenticator:
        return cls(read_pin_file(path))

    def verify(self, agent_id: str, credential: str) -> Agent | Refusal:
        if not isinstance(agent_id, str) or not AGENT_ID_RE.fullmatch(agent_id):
            return Refusal(RefusalReason.MALFORMED, "not an agent id")
        if not isinstance(credential, str) or not PIN_RE.fullmatch(credential):
            return Refusal(RefusalReason.MALFORMED, "a PIN is 4 to 12 digits")
        wait = self._lockout.locked_for(agent_id)
        if wait > 0:
            return Refusal(RefusalReason.LOCKED, "too many wrong PINs: try again later", wait)
        known = self._hashes.get(agent_id)
        ok = (known or _DUMMY).matches(credential) and known is not None
        if not ok:
            self._lockout.failed(agent_id)
            return Refusal(RefusalReason.WRONG_CREDENTIAL, "wrong agent id or PIN")
        self._lockout.succeeded(agent_id)
        return Agent(agent_id, AuthMethod.PIN)


class AgentCredentials:
    """The gate's authenticator: PINs to ``pins``, anything else to ``badges``."""

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
    pin_file: Path | None, badges: AgentAuthenticator | None = None
) -> AgentCredentials:
    """The gate's credentials: PINs from ``pin_file`` if it exists (a damaged file is a
    :class:`ConfigError`), and the badge verifier if one is given."""
    pins = PinAuthenticator.from_file(pin_file) if pin_file and pin_file.exists() else None
    return AgentCredentials(pins, badges)


__all__ = [
    "AGENT_ID_RE",
    "LOCKOUT_S",
    "MAX_FAILURES",
    "Agent",
    "AgentAuthenticator",
    "AgentCredentials",
    "AuthMethod",
    "CancelReason",
    "PinAuthenticator",
    "Refusal",
    "RefusalReason",
    "ReleaseReason",
    "check_new_pin",
    "hash_pin",
    "load_agent_credentials",
    "read_pin_file",
    "remove_agent",
    "set_pin",
]

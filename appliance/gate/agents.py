"""Who may act as a gate agent, and how an agent proves it.

An agent acts (release the gate after a manual check, cancel, record an opt-out) with a
signed action: a short barcode their handheld shows, or a token the agent station makes
after a PIN login. It reads ``<prefix><agent>:<COMMAND>:<issued_s>:<scope>:<signature>``:

* ``agent``: an agent id listed in this unit's registry, not past its ``valid_until``;
* ``COMMAND``: RELEASE, CANCEL or OPTOUT;
* ``issued_s``: when it was made (Unix seconds); it is good for ``action_ttl_s`` (60 s)
  and once only (a used or older action is refused, so a copy is worthless);
* ``scope``: the airport this gate boards at, or this gate's device id;
* ``nonce``: 8 random hex digits, so two actions in one second still differ;
* ``signature``: Ed25519 by the agent's key over all of the above (base64url); the
  registry holds each agent's public key, provisioned by ``gatectl agents add``.

Plain badges (``AGT:4711:RELEASE``) are refused: text anyone can print never opens the
gate. With no registry provisioned, no agent can act at all: that is the safe default.
The registry also holds each agent's PIN (salted scrypt) for the agent station's login.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate_contract.files import write_private

ACTION_TTL_S = 60.0
AGENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SCOPE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONCE_RE = re.compile(r"[0-9a-f]{8}")
_DOMAIN = b"gate agent action v1\n"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
MIN_PIN_DIGITS = 6


class AgentCommand(enum.StrEnum):
    RELEASE = "RELEASE"
    CANCEL = "CANCEL"
    OPTOUT = "OPTOUT"


@dataclass(frozen=True)
class Agent:
    agent_id: str
    public_key: Ed25519PublicKey
    valid_until: dt.date | None = None
    pin_hash: str = ""  # "scrypt$<salt hex>$<hash hex>"; "" = no station login

    def valid_on(self, day: dt.date) -> bool:
        return self.valid_until is None or day <= self.valid_until


@dataclass(frozen=True)
class AgentAction:
    """An authenticated agent action (the signature checked, fresh, unused)."""

    agent_id: str
    command: AgentCommand


class AgentRefused(ValueError):
    """Why an agent action or login is not taken (never echoes the token or the PIN)."""

    def __init__(self, reason: str, agent_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.agent_id = agent_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _message(agent_id: str, command: str, issued_s: int, scope: str, nonce: str) -> bytes:
    fields = (agent_id, command, str(issued_s), scope, nonce)
    return _DOMAIN + "\n".join(fields).encode("ascii")


def sign_action(
    key: Ed25519PrivateKey,
    agent_id: str,
    command: AgentCommand,
    scope: str,
    *,
    issued_s: int | None = None,
    prefix: str = "AGT:",
) -> str:
    """The barcode text of one action (what the agent's handheld or station makes)."""
    issued = int(time.time()) if issued_s is None else issued_s
    nonce = secrets.token_hex(4)
    signature = key.sign(_message(agent_id, command.value, issued, scope, nonce))
    return f"{prefix}{agent_id}:{command.value}:{issued}:{scope}:{nonce}:{_b64(signature)}"


def hash_pin(pin: str) -> str:
    """A salted scrypt hash of a PIN, as the registry stores it."""
    if not pin.isdigit() or len(pin) < MIN_PIN_DIGITS:
        raise ValueError(f"a PIN is at least {MIN_PIN_DIGITS} digits")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def _pin_matches(pin: str, stored: str) -> bool:
    try:
        kind, salt, digest = stored.split("$")
        expected = bytes.fromhex(digest)
        actual = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(actual, expected)


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class AgentRegistry:
    """The agents of this unit, their keys, validity and PINs (a JSON file, mode 0600).

    :meth:`verify_action` checks one scanned action; each accepted action is remembered
    until it would have expired anyway, so it is taken once. Actions issued before the
    registry was loaded are refused as well (a restart forgets nothing an attacker could
    use).
    """

    def __init__(
        self,
        agents: dict[str, Agent] | None = None,
        *,
        scopes: frozenset[str] = frozenset(),
        ttl_s: float = ACTION_TTL_S,
        clock: Callable[[], float] = time.time,
        path: Path | None = None,
    ) -> None:
        self.agents = dict(agents or {})
        self.scopes = scopes
        self.ttl_s = ttl_s
        self.path = path
        self._clock = clock
        self._loaded_at = clock()
        self._used: dict[bytes, float] = {}
        self._lock = threading.Lock()

    # --- the file ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, **options: object) -> AgentRegistry:
        """The registry in ``path``; an absent file is an empty registry (nobody may act).

        Raises ``ValueError`` naming the entry for a malformed file.
        """
        if not path.exists():
            return cls({}, path=path, **options)  # type: ignore[arg-type]
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            rows = document["agents"]
            if not isinstance(rows, list):
                raise TypeError("'agents' must be a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"agent registry {path} is unreadable: {exc}") from exc
        agents: dict[str, Agent] = {}
        for number, row in enumerate(rows, 1):
            try:
                agent = _agent_from(row)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"agent registry {path} entry {number}: {exc}") from exc
            agents[agent.agent_id] = agent
        return cls(agents, path=path, **options)  # type: ignore[arg-type]

    def save(self, path: Path | None = None) -> None:
        target = path or self.path
        if target is None:
            raise ValueError("no file to save the agent registry to")
        rows = [
            {
                "id": a.agent_id,
                "public_key": public_key_text(a.public_key),
                "valid_until": a.valid_until.isoformat() if a.valid_until else None,
                "pin": a.pin_hash,
            }
            for a in sorted(self.agents.values(), key=lambda a: a.agent_id)
        ]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_private(target, (json.dumps({"agents": rows}, indent=1) + "\n").encode())

    # --- actions -----------------------------------------------------------------------

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
        if not (
            issued_text.isdecimal() and _SCOPE_RE.fullmatch(scope) and _NONCE_RE.fullmatch(nonce)
        ):
            raise AgentRefused("agent action is malformed", agent_id)
        agent = self.agents.get(agent_id)
        if agent is None:
            raise AgentRefused("agent not registered on this unit", agent_id)
        now = self._clock()
        if not agent.valid_on(dt.datetime.fromtimestamp(now, dt.UTC).date()):
            raise AgentRefused("agent's registration has expired", agent_id)
        if scope not in self.scopes:
            raise AgentRefused("agent action is for another gate or airport", agent_id)
        try:
            signature = _unb64(signature_text)
            agent.public_key.verify(
                signature, _message(agent_id, command.value, int(issued_text), scope, nonce)
            )
        except (ValueError, InvalidSignature):
            raise AgentRefused("agent action signature does not verify", agent_id) from None
        issued = int(issued_text)
        if issued > now + 5 or now - issued > self.ttl_s:
            raise AgentRefused("agent action has expired (or comes from the future)", agent_id)
        if issued < self._loaded_at - 5:
            raise AgentRefused("agent action was made before this service started", agent_id)
        with self._lock:
            for used, at in list(self._used.items()):
                if now - at > self.ttl_s + 10:
                    del self._used[used]
            if signature in self._used:
                raise AgentRefused("agent action was already used", agent_id)
            self._used[signature] = now
        return AgentAction(agent_id, command)

    # --- the station's login ----------------------------------------------------------

    def verify_pin(self, agent_id: str, pin: str) -> Agent:
        """The agent whose PIN this is (raises ``AgentRefused``; constant work per try)."""
        agent = self.agents.get(agent_id)
        stored = agent.pin_hash if agent is not None else hash_pin("000000")
        matches = _pin_matches(pin, stored)
        if agent is None or not agent.pin_hash or not matches:
            raise AgentRefused("wrong agent id or PIN", agent_id)
        if not agent.valid_on(dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()):
            raise AgentRefused("agent's registration has expired", agent_id)
        return agent


def _agent_from(row: dict) -> Agent:
    agent_id = str(row["id"])
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise ValueError(f"agent id {agent_id!r} must be 1..32 letters, digits, '_' or '-'")
    raw = _unb64(str(row["public_key"]))
    key = Ed25519PublicKey.from_public_bytes(raw)
    until = row.get("valid_until")
    valid_until = dt.date.fromisoformat(until) if until else None
    pin = str(row.get("pin") or "")
    if pin and not pin.startswith("scrypt$"):
        raise ValueError("pin must be a scrypt hash (set it with gatectl agents add --pin)")
    return Agent(agent_id, key, valid_until, pin)


__all__ = [
    "ACTION_TTL_S",
    "AGENT_ID_RE",
    "MIN_PIN_DIGITS",
    "Agent",
    "AgentAction",
    "AgentCommand",
    "AgentRefused",
    "AgentRegistry",
    "hash_pin",
    "public_key_text",
    "sign_action",
]

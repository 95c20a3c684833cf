"""Agent credentials: scrypt PIN file, lockout, one interface for PINs and badges."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.gate import agents
from appliance.gate.agents import (
    Agent,
    AgentCredentials,
    AuthMethod,
    PinAuthenticator,
    Refusal,
    RefusalReason,
    read_pin_file,
    remove_agent,
    set_pin,
)
from testbed.testing import FakeClock


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.json"
    set_pin(path, "A123", "482913")
    set_pin(path, "B7", "731904")
    return path


def test_pin_file_holds_salted_scrypt_hashes_only(pin_file: Path) -> None:
    raw = pin_file.read_text()
    assert "482913" not in raw and "731904" not in raw
    entries = json.loads(raw)["agents"]
    assert set(entries) == {"A123", "B7"}
    assert all(e.startswith("scrypt$16384$8$1$") for e in entries.values())
    salts = {e.split("$")[4] for e in entries.values()}
    assert len(salts) == 2  # one salt per entry
    assert pin_file.stat().st_mode & 0o777 == 0o600
    set_pin(pin_file, "A123", "482913")  # same PIN again: a new salt, a new hash
    assert json.loads(pin_file.read_text())["agents"]["A123"] != entries["A123"]


def test_right_pin_gives_the_agent_and_wrong_pins_are_refused(pin_file: Path) -> None:
    auth = PinAuthenticator.from_file(pin_file)
    assert auth.verify("A123", "482913") == Agent("A123", AuthMethod.PIN)
    wrong = auth.verify("A123", "482914")
    unknown = auth.verify("Z999", "482913")
    assert isinstance(wrong, Refusal) and isinstance(unknown, Refusal)
    # An unknown id and a wrong PIN read the same: no oracle for which ids exist.
    assert (wrong.reason, wrong.message) == (unknown.reason, unknown.message)
    assert wrong.reason is RefusalReason.WRONG_CREDENTIAL
    assert auth.verify("B7", "482913").reason is RefusalReason.WRONG_CREDENTIAL


@pytest.mark.parametrize(
    ("agent_id", "pin"),
    [("", "482913"), ("A 1", "482913"), ("A123", "48a913"), ("A123", "12"), ("A123", "9" * 13)],
)
def test_malformed_input_is_refused_without_hashing(pin_file, agent_id, pin) -> None:
    auth = PinAuthenticator.from_file(pin_file)
    assert auth.verify(agent_id, pin).reason is RefusalReason.MALFORMED


def test_lockout_after_repeated_wrong_pins_then_expires(pin_file: Path) -> None:
    clock = FakeClock()
    auth = PinAuthenticator(read_pin_file(pin_file), clock=clock)
    for _ in range(agents.MAX_FAILURES):
        assert auth.verify("A123", "000000").reason is RefusalReason.WRONG_CREDENTIAL
    locked = auth.verify("A123", "482913")  # even the right PIN, while locked
    assert locked.reason is RefusalReason.LOCKED and locked.retry_after_s > 0
    assert auth.verify("B7", "731904") == Agent("B7", AuthMethod.PIN)  # others unaffected
    for _ in range(agents.MAX_FAILURES):  # ids that do not exist lock the same way
        auth.verify("GHOST", "000000")
    assert auth.verify("GHOST", "000000").reason is RefusalReason.LOCKED
    clock.advance(agents.LOCKOUT_S + 1)
    assert auth.verify("A123", "482913") == Agent("A123", AuthMethod.PIN)


def test_a_success_resets_the_failure_count(pin_file: Path) -> None:
    auth = PinAuthenticator(read_pin_file(pin_file), clock=FakeClock())
    for _ in range(agents.MAX_FAILURES - 1):
        auth.verify("A123", "000000")
    assert isinstance(auth.verify("A123", "482913"), Agent)
    for _ in range(agents.MAX_FAILURES - 1):
        auth.verify("A123", "000000")
    assert isinstance(auth.verify("A123", "482913"), Agent)


class _Badges:
    """A stand-in for the signed-badge verifier the security work plugs in."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def verify(self, agent_id: str, credential: str) -> Agent | Refusal:
        self.seen.append((agent_id, credential))
        if credential == "valid-token":
            return Agent(agent_id, AuthMethod.BADGE, airline="BA")
        return Refusal(RefusalReason.EXPIRED, "badge expired")


def test_credentials_send_pins_and_badges_to_their_verifier(pin_file: Path) -> None:
    badges = _Badges()
    creds = AgentCredentials(PinAuthenticator.from_file(pin_file), badges)
    assert creds.verify("A123", "482913").method is AuthMethod.PIN
    assert creds.verify("A123", "valid-token") == Agent("A123", AuthMethod.BADGE, "BA")
    assert creds.verify("A123", "old-token").reason is RefusalReason.EXPIRED
    assert badges.seen == [("A123", "valid-token"), ("A123", "old-token")]
    assert creds.verify("A123", "").reason is RefusalReason.MALFORMED
    assert creds.verify("A123", "x" * 5000).reason is RefusalReason.MALFORMED
    no_badges = AgentCredentials(PinAuthenticator.from_file(pin_file))
    assert no_badges.verify("A123", "valid-token").reason is RefusalReason.NOT_CONFIGURED
    assert AgentCredentials().verify("A123", "482913").reason is RefusalReason.NOT_CONFIGURED


@pytest.mark.parametrize("pin", ["12345", "111111", "12345a", "1234567890123"])
def test_weak_or_malformed_new_pins_are_refused(tmp_path: Path, pin: str) -> None:
    with pytest.raises(ValueError):
        set_pin(tmp_path / "agents.json", "A1", pin)
    assert not (tmp_path / "agents.json").exists()


def test_pin_file_readable_by_others_is_refused(pin_file: Path) -> None:
    os.chmod(pin_file, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_pin_file(pin_file)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"agents": []}', "expected"),
        ('{"agents": {"bad id": "scrypt$16384$8$1$00$00"}}', "not an agent id"),
        ('{"agents": {"A1": "md5$abc"}}', "entry of A1"),
        ('{"agents": {"A1": "scrypt$3$8$1$' + "00" * 16 + "$" + "00" * 32 + '"}}', "entry of A1"),
    ],
)
def test_damaged_pin_file_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "agents.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match=message):
        read_pin_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_pin_file(tmp_path / "missing.json")


def test_remove_agent(pin_file: Path) -> None:
    assert remove_agent(pin_file, "B7") is True
    assert remove_agent(pin_file, "B7") is False
    assert set(read_pin_file(pin_file)) == {"A123"}

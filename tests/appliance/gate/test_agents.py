"""Agents: signed actions at the scanner (registered key, fresh, for this gate, used
once; each refusal is an attack a printed or copied badge could try), and the station's
PIN login (salted scrypt in the same 0600 registry, lockout, one interface for PINs and
badges)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.gate import agents
from appliance.gate.agents import (
    MAX_FAILURES,
    Agent,
    AgentAction,
    AgentCommand,
    AgentCredentials,
    AgentEntry,
    AgentRefused,
    AgentRegistry,
    AuthMethod,
    PinAuthenticator,
    Refusal,
    RefusalReason,
    hash_pin,
    read_pin_file,
    remove_agent,
    set_key,
    set_pin,
    sign_action,
)
from testbed.testing import TEST_DEVICE, FakeClock, TestAgent

NOW = 1_800_000_000.0


def registry(*agents: TestAgent, clock=None, **options) -> AgentRegistry:
    clock = clock or FakeClock(NOW)
    return AgentRegistry(
        {a.agent_id: a.entry for a in agents},
        device=TEST_DEVICE,
        airport="LAX",
        clock=clock,
        **options,
    )


def body(text: str) -> str:
    return text.removeprefix("AGT:")


def test_a_signed_fresh_action_is_taken_once() -> None:
    agent = TestAgent("A1")
    units = registry(agent)
    token = agent.action("RELEASE", issued_s=int(NOW))
    assert units.verify_action(body(token)) == AgentAction("A1", AgentCommand.RELEASE)
    with pytest.raises(AgentRefused, match="already used"):
        units.verify_action(body(token))  # a copy of the barcode, scanned again


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda a, b: "NOBODY:RELEASE", "not a signed action"),  # the printed badge
        (lambda a, b: body(b.action("RELEASE", issued_s=int(NOW))), "not registered"),
        (lambda a, b: body(a.action("RELEASE", issued_s=int(NOW) - 61)), "expired"),
        (lambda a, b: body(a.action("RELEASE", issued_s=int(NOW) + 60)), "future"),
        (lambda a, b: body(a.action("RELEASE", issued_s=int(NOW) - 300)), "expired"),
    ],
)
def test_forged_stale_or_foreign_actions_are_refused(make, reason) -> None:
    agent, stranger = TestAgent("A1"), TestAgent("Z9")
    with pytest.raises(AgentRefused, match=reason):
        registry(agent).verify_action(make(agent, stranger))


def test_a_signature_of_another_key_under_a_registered_id_is_refused() -> None:
    agent = TestAgent("A1")
    impostor = TestAgent("A1")  # same id, another key
    with pytest.raises(AgentRefused, match="does not verify"):
        registry(agent).verify_action(body(impostor.action("RELEASE", issued_s=int(NOW))))


def test_a_changed_command_breaks_the_signature() -> None:
    agent = TestAgent("A1")
    token = body(agent.action("CANCEL", issued_s=int(NOW)))
    with pytest.raises(AgentRefused, match="does not verify"):
        registry(agent).verify_action(token.replace(":CANCEL:", ":RELEASE:"))


@pytest.mark.parametrize(
    ("command", "scope", "reason"),
    [
        ("OPTOUT", "JFK", "another gate or airport"),
        ("OPTOUT", "gate-lax-b43", "another gate or airport"),
        # a release or cancel names its gate: a photographed action for the airport, or
        # for the gate next door, opens nothing here
        ("RELEASE", "LAX", "must name this gate"),
        ("RELEASE", "gate-lax-b43", "must name this gate"),
        ("CANCEL", "LAX", "must name this gate"),
    ],
)
def test_an_action_for_another_gate_or_airport_is_refused(command, scope, reason) -> None:
    agent = TestAgent("A1")
    token = body(agent.action(command, issued_s=int(NOW), scope=scope))
    with pytest.raises(AgentRefused, match=reason):
        registry(agent).verify_action(token)


def test_an_opt_out_may_name_the_airport() -> None:
    agent = TestAgent("A1")
    action = registry(agent).verify_action(body(agent.action("OPTOUT", issued_s=int(NOW))))
    assert action.command is AgentCommand.OPTOUT


def test_a_used_action_stays_used_after_a_restart(tmp_path) -> None:
    """The attack: an action used just before a restart was taken again after it."""
    agent = TestAgent("A1")
    used = tmp_path / "used.jsonl"
    token = body(agent.action("RELEASE", issued_s=int(NOW)))
    assert registry(agent, used_path=used).verify_action(token).command is AgentCommand.RELEASE
    assert stat.S_IMODE(os.stat(used).st_mode) == 0o600
    with used.open("ab") as out:
        out.write(b'{"used": "ab')  # a crash mid-append leaves a torn line
    restarted = registry(agent, clock=FakeClock(NOW + 20), used_path=used)
    with pytest.raises(AgentRefused, match="already used"):
        restarted.verify_action(token)
    other = body(agent.action("CANCEL", issued_s=int(NOW) + 20))
    assert restarted.verify_action(other).command is AgentCommand.CANCEL


def test_used_actions_are_forgotten_once_they_expired(tmp_path) -> None:
    agent = TestAgent("A1")
    used = tmp_path / "used.jsonl"
    registry(agent, used_path=used).verify_action(body(agent.action("OPTOUT", issued_s=int(NOW))))
    registry(agent, clock=FakeClock(NOW + 3600), used_path=used)
    assert used.read_bytes() == b""  # rewritten without what can no longer be replayed


def test_an_action_that_cannot_be_recorded_is_refused(tmp_path) -> None:
    agent = TestAgent("A1")
    used = tmp_path / "used.jsonl"
    units = registry(agent, used_path=used)
    used.mkdir()
    with pytest.raises(AgentRefused, match="cannot be recorded"):
        units.verify_action(body(agent.action("RELEASE", issued_s=int(NOW))))


def test_an_expired_registration_acts_no_more() -> None:
    agent = TestAgent("A1")
    clock = FakeClock(NOW)
    yesterday = dt.datetime.fromtimestamp(NOW, dt.UTC).date() - dt.timedelta(days=1)
    units = AgentRegistry(
        {"A1": AgentEntry("A1", agent.key.public_key(), valid_until=yesterday)},
        device=TEST_DEVICE,
        clock=clock,
    )
    with pytest.raises(AgentRefused, match="registration has expired"):
        units.verify_action(body(agent.action("RELEASE", issued_s=int(NOW))))


def test_an_empty_registry_accepts_nobody() -> None:
    agent = TestAgent("A1")
    with pytest.raises(AgentRefused, match="not registered"):
        AgentRegistry().verify_action(body(agent.action("RELEASE")))


def test_an_expired_registration_cannot_log_in_at_the_station() -> None:
    yesterday = dt.datetime.fromtimestamp(NOW, dt.UTC).date() - dt.timedelta(days=1)
    units = AgentRegistry(
        {
            "A1": AgentEntry("A1", pin_hash=hash_pin("246810"), valid_until=yesterday),
            "B2": AgentEntry("B2", pin_hash=hash_pin("135790")),
        },
        clock=FakeClock(NOW),
    )
    assert set(units.pin_hashes()) == {"B2"}


def test_the_registry_file_is_owner_only_and_round_trips(tmp_path) -> None:
    agent = TestAgent("A1", pin="135790")
    path = tmp_path / "agents.json"
    AgentRegistry({"A1": agent.entry}).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "135790" not in path.read_text()
    loaded = AgentRegistry.load(path, airport="LAX")
    assert PinAuthenticator(loaded.pin_hashes()).verify("A1", "135790").agent_id == "A1"
    token = sign_action(agent.key, "A1", AgentCommand.OPTOUT, "LAX")
    assert loaded.verify_action(body(token)).command is AgentCommand.OPTOUT


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"agents": [{"id": "A1"}]}),
        json.dumps({"agents": {"A1": {"public_key": "!!"}}}),
        json.dumps({"agents": {"A1": {"valid_until": "next week"}}}),
    ],
)
def test_a_malformed_registry_is_one_clear_error(tmp_path, content) -> None:
    path = tmp_path / "agents.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="agent registry"):
        AgentRegistry.load(path)


def test_no_registry_file_means_nobody_may_act(tmp_path) -> None:
    assert AgentRegistry.load(tmp_path / "absent.json").agents == {}


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.json"
    set_pin(path, "A123", "482913")
    set_pin(path, "B7", "731904")
    return path


def test_pin_file_holds_salted_scrypt_hashes_only(pin_file: Path) -> None:
    raw = pin_file.read_text()
    assert "482913" not in raw and "731904" not in raw
    entries = {k: e["pin"] for k, e in json.loads(raw)["agents"].items()}
    assert set(entries) == {"A123", "B7"}
    assert all(e.startswith("scrypt$16384$8$1$") for e in entries.values())
    salts = {e.split("$")[4] for e in entries.values()}
    assert len(salts) == 2  # one salt per entry
    assert pin_file.stat().st_mode & 0o777 == 0o600
    set_pin(pin_file, "A123", "482913")  # same PIN again: a new salt, a new hash
    assert json.loads(pin_file.read_text())["agents"]["A123"]["pin"] != entries["A123"]


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
        ('{"agents": {"bad id": {}}}', "not an agent id"),
        ('{"agents": {"A1": "scrypt$16384$8$1$00$00"}}', "entry of A1: expected an object"),
        ('{"agents": {"A1": {"pin": "md5$abc"}}}', "entry of A1"),
        (
            '{"agents": {"A1": {"pin": "scrypt$3$8$1$' + "00" * 16 + "$" + "00" * 32 + '"}}}',
            "entry of A1",
        ),
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


def test_a_pin_and_a_key_live_in_one_entry(pin_file: Path) -> None:
    """set-pin keeps the agent's signing key, and registering a key keeps their PIN."""
    agent = TestAgent("A123")
    set_key(pin_file, "A123", agent.key.public_key())
    set_pin(pin_file, "A123", "246813")
    loaded = AgentRegistry.load(pin_file, device=TEST_DEVICE)
    assert loaded.agents["A123"].public_key is not None
    assert PinAuthenticator(loaded.pin_hashes()).verify("A123", "246813").agent_id == "A123"
    assert loaded.verify_action(body(agent.action("CANCEL"))).command is AgentCommand.CANCEL


def test_concurrent_wrong_pins_are_counted_before_they_are_checked(pin_file: Path) -> None:
    """The attack: 40 wrong PINs at once were all checked, past the lockout of 5."""
    auth = PinAuthenticator.from_file(pin_file)
    start = threading.Barrier(40)
    answers: list[Agent | Refusal] = []

    def guess(n: int) -> None:
        start.wait()
        answers.append(auth.verify("A123", f"{100000 + n}"))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked = [a for a in answers if getattr(a, "reason", None) is RefusalReason.WRONG_CREDENTIAL]
    assert len(checked) == MAX_FAILURES
    assert all(isinstance(a, Refusal) for a in answers)


def test_a_registration_that_expires_while_running_cannot_sign_in() -> None:
    """The registration ends at midnight: a service started the day before checks it at
    each sign-in, not only when it loaded the registry."""
    last_day = dt.date(2026, 12, 1)
    today = [last_day]
    auth = PinAuthenticator(
        {"A1": hash_pin("246810")}, valid_until={"A1": last_day}, today=lambda: today[0]
    )
    assert auth.verify("A1", "246810") == Agent("A1", AuthMethod.PIN)
    today[0] = last_day + dt.timedelta(days=1)
    refused = auth.verify("A1", "246810")
    assert isinstance(refused, Refusal) and refused.reason is RefusalReason.EXPIRED

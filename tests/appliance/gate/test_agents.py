"""Agent actions are authenticated: signed by a registered agent's key, fresh, for this
gate, used once. Each refusal here is an attack a printed or copied badge could try."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest

from appliance.gate.agents import (
    Agent,
    AgentAction,
    AgentCommand,
    AgentRefused,
    AgentRegistry,
    hash_pin,
    sign_action,
)
from testbed.testing import FakeClock, TestAgent

NOW = 1_800_000_000.0


def registry(*agents: TestAgent, clock=None, **options) -> AgentRegistry:
    clock = clock or FakeClock(NOW)
    return AgentRegistry(
        {a.agent_id: a.entry for a in agents},
        scopes=frozenset({"LAX", "gate-lax-b42"}),
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


def test_an_action_for_another_airport_is_refused() -> None:
    agent = TestAgent("A1", scope="JFK")
    with pytest.raises(AgentRefused, match="another gate or airport"):
        registry(agent).verify_action(body(agent.action("RELEASE", issued_s=int(NOW))))


def test_an_action_made_before_the_service_started_is_refused() -> None:
    """A restart forgets which actions were used: older ones are never taken after it."""
    agent = TestAgent("A1")
    token = body(agent.action("RELEASE", issued_s=int(NOW) - 30))
    with pytest.raises(AgentRefused, match="before this service started"):
        registry(agent).verify_action(token)


def test_an_expired_registration_acts_no_more() -> None:
    agent = TestAgent("A1")
    clock = FakeClock(NOW)
    yesterday = dt.datetime.fromtimestamp(NOW, dt.UTC).date() - dt.timedelta(days=1)
    units = AgentRegistry(
        {"A1": Agent("A1", agent.key.public_key(), yesterday)},
        scopes=frozenset({"LAX"}),
        clock=clock,
    )
    with pytest.raises(AgentRefused, match="registration has expired"):
        units.verify_action(body(agent.action("RELEASE", issued_s=int(NOW))))


def test_an_empty_registry_accepts_nobody() -> None:
    agent = TestAgent("A1")
    with pytest.raises(AgentRefused, match="not registered"):
        AgentRegistry().verify_action(body(agent.action("RELEASE")))


def test_pins_are_salted_hashes_checked_in_constant_work() -> None:
    agent = TestAgent("A1", pin="246810")
    units = registry(agent)
    assert units.verify_pin("A1", "246810").agent_id == "A1"
    for agent_id, pin in (("A1", "246811"), ("Z9", "246810"), ("A1", "")):
        with pytest.raises(AgentRefused, match="wrong agent id or PIN"):
            units.verify_pin(agent_id, pin)
    assert hash_pin("246810") != hash_pin("246810")  # salted
    with pytest.raises(ValueError, match="6 digits"):
        hash_pin("1234")


def test_the_registry_file_is_owner_only_and_round_trips(tmp_path) -> None:
    agent = TestAgent("A1", pin="135790")
    path = tmp_path / "agents.json"
    AgentRegistry({"A1": agent.entry}).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "135790" not in path.read_text()
    loaded = AgentRegistry.load(path, scopes=frozenset({"LAX"}))
    assert loaded.verify_pin("A1", "135790").agent_id == "A1"
    token = sign_action(agent.key, "A1", AgentCommand.OPTOUT, "LAX")
    assert loaded.verify_action(body(token)).command is AgentCommand.OPTOUT


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"agents": {}}), json.dumps({"agents": [{"id": "A1"}]})],
)
def test_a_malformed_registry_is_one_clear_error(tmp_path, content) -> None:
    path = tmp_path / "agents.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="agent registry"):
        AgentRegistry.load(path)


def test_no_registry_file_means_nobody_may_act(tmp_path) -> None:
    assert AgentRegistry.load(tmp_path / "absent.json").agents == {}

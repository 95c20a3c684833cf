"""The gate state machine on a fake link: every transition, refusals, timers, link loss."""

from __future__ import annotations

import logging
import threading

import pytest

from appliance.gate.machine import TRANSITIONS, Event, GateController, Relay, State
from firmware_bridge.host import (
    Boot,
    DoorChanged,
    Fault,
    LinkState,
    OptOutPressed,
)
from firmware_bridge.protocol import FaultCode, Indicator, Result


def put(
    gate: GateController,
    state: State,
    *,
    door_opened=False,
    door_open=False,
    out_cause: Event | None = None,
    retaking=False,
) -> None:
    """Place the machine in ``state`` (white-box: to test each table row on its own)."""
    gate._phase = state
    gate._door_opened = door_opened
    gate._door_open = door_open
    gate._out_cause = out_cause
    gate._retaking = retaking


_VERDICTS = (Event.NO_MATCH, Event.NOT_ON_FLIGHT, Event.UNUSABLE)


@pytest.mark.parametrize(
    ("source", "event"), sorted(TRANSITIONS, key=lambda k: (k[0].value, k[1].value))
)
def test_every_transition_in_the_table(link, source, event, caplog):
    gate = GateController(link, passage_window_s=5.0)
    rule = TRANSITIONS[(source, event)]
    put(
        gate,
        source,
        door_opened=event in (Event.DOOR_CLOSED, Event.DOOR_HELD_OPEN),
        door_open=event is Event.DOOR_HELD_OPEN,
        out_cause=Event.LEDGER_FAILED if event is Event.LEDGER_RESTORED else None,
        retaking=source is State.CAPTURING and event in _VERDICTS,
    )
    link.calls.clear()
    with caplog.at_level(logging.INFO, logger="gate.state"):
        assert gate.fire(event, "the reason") is True
    assert gate.phase is rule.target
    relay = [c[0] for c in link.calls if c[0] in ("pulse", "close")]
    expected = {Relay.PULSE: ["pulse"], Relay.CLOSE: ["close"], Relay.KEEP: []}[rule.relay]
    if rule.commands:
        assert relay == expected
        assert link.indicator == rule.indicator
        names = [c[0] for c in link.calls]
        if relay and rule.indicator is not None:  # relay first, then the indicator
            assert names.index(relay[0]) < names.index("indicator")
    else:
        assert link.calls == []  # link known down: nothing tried
    step = gate.history[-1]
    assert (step.source, step.event, step.target, step.accepted) == (
        source,
        event,
        rule.target,
        True,
    )
    assert step.reason == "the reason"
    lines = [r.getMessage() for r in caplog.records if r.name == "gate.state"]
    assert lines == [f"gate: {step.line()}"]
    gate.close()


def test_every_state_takes_opt_out_error_link_lost_and_fault():
    for state in State:
        for event in (Event.OPT_OUT, Event.ERROR, Event.LINK_LOST, Event.FAULT):
            assert (state, event) in TRANSITIONS, (state, event)
    # never a pulse on a timeout, a failure or an opt-out
    for (_, event), rule in TRANSITIONS.items():
        if rule.relay is Relay.PULSE:
            assert event in (Event.MATCH, Event.AGENT_RELEASE)


def test_indicator_per_state_is_consistent():
    shown = {}
    for rule in TRANSITIONS.values():
        if rule.indicator is not None and rule.target is not State.READY:
            shown.setdefault(rule.target, set()).add(rule.indicator)
    assert shown[State.GRANTED] == {Indicator.GRANTED}
    assert shown[State.REFER_TO_AGENT] == {Indicator.SEE_AGENT}
    assert shown[State.MANUAL_CHECK] == {Indicator.OPT_OUT_ACK}
    assert shown[State.OUT_OF_SERVICE] == {Indicator.OUT_OF_SERVICE}


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.READY, Event.MATCH),
        (State.CAPTURING, Event.MATCH),
        (State.MANUAL_CHECK, Event.MATCH),
        (State.REFER_TO_AGENT, Event.MATCH),
        (State.MANUAL_CHECK, Event.CAPTURE_STARTED),
        (State.OUT_OF_SERVICE, Event.AGENT_RELEASE),
        (State.OUT_OF_SERVICE, Event.CAPTURE_STARTED),
        (State.VERIFYING, Event.AGENT_RELEASE),
        (State.READY, Event.DOOR_CLOSED),
        (State.READY, Event.VERDICT_TIMEOUT),
    ],
)
def test_unknown_pairs_are_refused_and_leave_the_gate_safe(link, state, event, caplog):
    gate = GateController(link)
    put(gate, state)
    link.calls.clear()
    with caplog.at_level(logging.WARNING, logger="gate.state"):
        assert gate.fire(event, "why not") is False
    assert gate.phase is state
    assert link.pulses == [] and link.calls == []
    assert any(f"refused {event.value} in {state.value}" in r.getMessage() for r in caplog.records)
    assert not gate.history[-1].accepted


def test_legacy_view_and_methods(gate, link):
    assert gate.phase is State.READY
    assert gate.capturing() is True and gate.phase is State.CAPTURING
    assert gate.fire(Event.FRAME_SENT) and gate.phase is State.VERIFYING
    assert gate.refer() is True and gate.phase is State.REFER_TO_AGENT
    assert gate.ready() is True and gate.phase is State.READY
    assert link.indicator == Indicator.READY


def test_grant_then_door_open_and_close_ends_the_passage(gate, link):
    gate.capturing()
    gate.fire(Event.FRAME_SENT)
    assert gate.grant() is True
    assert link.pulses == [("pulse", 3000)] and link.indicator == Indicator.GRANTED
    link.emit(DoorChanged(False))  # a close before any open does not end the grant
    assert gate.phase is State.GRANTED
    link.emit(DoorChanged(True))
    assert gate.phase is State.GRANTED
    link.emit(DoorChanged(False))
    assert gate.phase is State.READY
    assert gate.history[-1].event is Event.DOOR_CLOSED
    assert link.calls[-2:] == [("close",), ("indicator", Indicator.READY)]


def test_door_never_opened_closes_the_relay_no_passage(link):
    gate = GateController(link, passage_window_s=0.05)
    gate.start()
    put(gate, State.VERIFYING)
    assert gate.grant()
    assert gate.wait_for(State.READY, timeout=5.0)
    step = gate.history[-1]
    assert (step.event, step.reason) == (Event.PASSAGE_TIMEOUT, "no passage")
    assert link.calls[-2:] == [("close",), ("indicator", Indicator.READY)]


def test_door_held_open_refers(link):
    gate = GateController(link, passage_window_s=0.1)
    gate.start()
    put(gate, State.MANUAL_CHECK)
    assert gate.agent_release()
    link.emit(DoorChanged(True))
    assert gate.wait_for(State.REFER_TO_AGENT, timeout=5.0)
    assert gate.history[-1].event is Event.DOOR_HELD_OPEN
    assert link.indicator == Indicator.SEE_AGENT


def test_passage_timer_is_disarmed_once_the_door_closed(link, monkeypatch):
    timers: list[threading.Timer] = []

    class RecordedTimer(threading.Timer):
        def start(self) -> None:
            timers.append(self)
            super().start()

    monkeypatch.setattr(threading, "Timer", RecordedTimer)
    gate = GateController(link, passage_window_s=0.1)
    gate.start()
    put(gate, State.VERIFYING)
    gate.grant()
    link.emit(DoorChanged(True))
    link.emit(DoorChanged(False))
    assert gate.phase is State.READY
    assert timers, "the grant armed no passage timer"
    for timer in timers:  # each has run out (or been cancelled) once joined
        timer.join(timeout=10)
        assert not timer.is_alive()
    assert gate.phase is State.READY
    assert [s.event for s in gate.history][-1] is Event.DOOR_CLOSED


@pytest.mark.parametrize("state", [s for s in State if s is not State.OUT_OF_SERVICE])
def test_opt_out_button_in_any_state(link, state):
    gate = GateController(link)
    put(gate, state)
    link.calls.clear()
    link.emit(OptOutPressed())
    assert gate.phase is State.MANUAL_CHECK
    assert gate.opt_out_pending() and gate.cancelled()
    assert link.calls == [("close",), ("indicator", Indicator.OPT_OUT_ACK)]
    # waits for the agent: no capture, no grant
    assert gate.capturing() is False and gate.grant() is False
    assert link.pulses == []


def test_manual_check_ends_by_agent_release_or_cancel(gate, link):
    link.emit(OptOutPressed())
    assert gate.agent_release("agent checked the passport")
    assert gate.phase is State.AGENT_RELEASED and not gate.opt_out_pending()
    assert link.pulses == [("pulse", 3000)]
    link.emit(DoorChanged(True))
    link.emit(DoorChanged(False))
    assert gate.phase is State.READY
    link.emit(OptOutPressed())
    assert gate.agent_cancel()
    assert gate.phase is State.READY and not gate.opt_out_pending()
    assert link.pulses == [("pulse", 3000)]


def test_link_lost_takes_the_gate_out_until_it_returns(gate, link):
    gate.capturing()
    link.calls.clear()
    link.emit(LinkState(False))
    assert gate.phase is State.OUT_OF_SERVICE
    assert gate.cancelled()
    assert link.calls == []  # nothing tried on a dead line; the MCU closes the relay itself
    assert gate.capturing() is False and gate.agent_release() is False
    link.emit(LinkState(True))
    assert gate.phase is State.READY
    assert link.calls == [("close",), ("indicator", Indicator.READY)]


def test_link_up_while_serving_changes_nothing(gate, link):
    gate.capturing()
    link.emit(LinkState(True))
    assert gate.phase is State.CAPTURING


def test_fault_and_reboot_close_the_relay_and_go_out_of_service(gate, link):
    put(gate, State.GRANTED, door_opened=False)
    link.emit(Fault(FaultCode.LINK_LOST))
    assert gate.phase is State.OUT_OF_SERVICE
    assert link.calls[-2:] == [("close",), ("indicator", Indicator.OUT_OF_SERVICE)]
    link.emit(LinkState(True))
    assert gate.phase is State.READY
    link.emit(Boot("1.0", 2))
    assert gate.phase is State.OUT_OF_SERVICE
    assert "MCU rebooted" in gate.history[-1].reason


def test_pulse_that_cannot_be_delivered_never_shows_granted(gate, link):
    put(gate, State.VERIFYING)
    link.down = True
    assert gate.grant() is False
    assert gate.phase is State.OUT_OF_SERVICE
    link.down = False
    put(gate, State.VERIFYING)
    link.reject_pulse = True
    assert gate.grant() is False
    assert gate.phase is State.REFER_TO_AGENT
    assert link.indicator == Indicator.SEE_AGENT and link.pulses == []


def test_a_close_a_rebooted_mcu_refuses_on_the_way_out_of_service_is_a_warning(gate, link, caplog):
    """After an MCU reboot the old session's RELAY_CLOSE is refused: the gate goes out of
    service and says so at WARNING; a refusal while serving stays an ERROR."""
    link.reject_close = Result.REJECTED_BAD  # what a rebooted MCU answers the old session
    with caplog.at_level(logging.WARNING, logger="gate.state"):
        gate.fire(Event.FAULT, "MCU fault LINK_LOST")
    assert gate.phase is State.OUT_OF_SERVICE
    (refused,) = [r for r in caplog.records if "MCU rejected RELAY_CLOSE" in r.getMessage()]
    assert refused.levelno == logging.WARNING and "going out of service" in refused.getMessage()
    link.reject_close = Result.REJECTED_AUTH
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gate.state"):
        gate.fire(Event.FAULT, "MCU fault")  # a tampered line or the wrong key: an ERROR
    assert [r.levelno for r in caplog.records if "REJECTED_AUTH" in r.getMessage()] == [
        logging.ERROR
    ]
    link.reject_close = 0
    link.emit(LinkState(True))
    put(gate, State.VERIFYING)
    link.reject_pulse = True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gate.state"):
        gate.grant()
    assert [r.levelno for r in caplog.records if "MCU rejected" in r.getMessage()] == [
        logging.ERROR
    ]


def test_opt_out_while_out_of_service_is_remembered(gate, link):
    link.emit(LinkState(False))
    link.emit(OptOutPressed())
    assert gate.phase is State.OUT_OF_SERVICE and gate.opt_out_pending()
    link.emit(LinkState(True))
    assert gate.phase is State.READY and gate.opt_out_pending()


def test_agent_cancel_during_capture_cancels_it(gate):
    gate.capturing()
    assert not gate.cancelled()
    gate.agent_cancel("agent: wrong queue")
    assert gate.phase is State.READY and gate.cancelled()


@pytest.mark.parametrize("state", [State.READY, State.CAPTURING, State.VERIFYING])
def test_an_agent_releases_only_a_traveller_who_is_with_the_agent(link, state):
    """The attack: a release racing a cancel (or a signed RELEASE scanned at an idle gate)
    pulsed the relay from READY, for nobody, with no traveller's record to log it in."""
    gate = GateController(link)
    gate.start()
    put(gate, state)
    assert gate.agent_release() is False
    assert link.pulses == [] and gate.phase is state


def test_a_cancel_that_wins_the_race_leaves_the_release_nothing_to_open(gate, link):
    gate.fire(Event.PASS_REFUSED, "wrong flight")
    assert gate.agent_cancel("not boarding")
    assert gate.agent_release() is False
    assert link.pulses == [] and gate.phase is State.READY


def test_events_from_many_threads_keep_one_consistent_state(link):
    gate = GateController(link)
    gate.start()
    errors = []

    def hammer(event):
        try:
            for _ in range(200):
                gate.fire(event)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=hammer, args=(e,))
        for e in (Event.OPT_OUT, Event.AGENT_CANCEL, Event.CAPTURE_STARTED, Event.RESET)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for step in gate.history:
        if step.accepted:
            assert TRANSITIONS[(step.source, step.event)].target is step.target
    assert link.pulses == []


def test_log_lines_hold_no_biometrics(gate, caplog):
    with caplog.at_level(logging.DEBUG, logger="gate.state"):
        gate.capturing()
        gate.fire(Event.FRAME_SENT, "frame sent", capture_id="c-1", pixels=b"\xff\xd8\xff")
        gate.refer("no_match", Event.NO_MATCH)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "capture_id=c-1" in text
    assert "pixels" not in text and "\\xff" not in text


def test_a_match_arriving_after_the_opt_out_button_does_not_open_the_relay(gate, link):
    """The button's flag is set before the event reaches the machine: the match must lose."""
    put(gate, State.VERIFYING)
    gate._opt_out.set()  # what the link's event thread does first on OptOutPressed
    link.calls.clear()
    assert gate.grant() is False
    assert link.pulses == []
    assert gate.phase is State.VERIFYING  # refused; the opt-out event then takes over
    gate.fire(Event.OPT_OUT, "opt-out button")
    assert gate.phase is State.MANUAL_CHECK and link.pulses == []


@pytest.mark.parametrize("cause", [Event.LINK_LOST, Event.FAULT])
def test_a_ledger_back_in_order_never_ends_a_link_or_mcu_outage(gate, link, cause) -> None:
    gate.fire(Event.LEDGER_FAILED, "purge ledger not durable (ENOSPC)")
    assert gate.phase is State.OUT_OF_SERVICE and link.indicator == Indicator.OUT_OF_SERVICE
    assert gate.out_of_service_cause is Event.LEDGER_FAILED
    gate.fire(cause, "the MCU went away meanwhile")
    assert gate.fire(Event.LEDGER_RESTORED, "purge ledger durable again") is False
    assert gate.phase is State.OUT_OF_SERVICE


def test_a_ledger_outage_ends_by_itself_once_records_are_durable(gate, link) -> None:
    link.calls.clear()
    gate.fire(Event.LEDGER_FAILED, "purge ledger not durable (ENOSPC)")
    assert [c[0] for c in link.calls][:1] == ["close"] and link.pulses == []
    assert gate.fire(Event.LEDGER_RESTORED, "purge ledger durable again") is True
    assert gate.phase is State.READY and link.indicator == Indicator.READY


@pytest.mark.parametrize("event", _VERDICTS)
def test_a_verdict_while_capturing_refers_only_after_a_retake(gate, link, event):
    """A refusing verdict is taken while capturing only from the second look that follows
    a capture the matcher did not verify; at any other capture it is refused."""
    gate.fire(Event.CAPTURE_STARTED)
    assert gate.fire(event) is False and gate.phase is State.CAPTURING
    gate.fire(Event.FRAME_SENT)
    assert gate.fire(Event.RETAKE) is True and gate.phase is State.CAPTURING
    assert gate.fire(event) is True and gate.phase is State.REFER_TO_AGENT
    assert not link.pulses and link.indicator == Indicator.SEE_AGENT
    gate.fire(Event.RESET)
    gate.fire(Event.CAPTURE_STARTED)  # the next traveller: no retake carried over
    assert gate.fire(event) is False and gate.phase is State.CAPTURING

"""End-to-end tests: GateLink (pyserial) <-> Simulator (FirmwareCore) over a real pty.

Nothing on the serial line is mocked, and every test runs twice: with the firmware on
CPython and on the real MicroPython interpreter (the ``interpreter`` fixture).  Tests
wait on conditions by polling with a generous deadline; they never assert how long
something took.
"""

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.host import (
    Boot,
    CounterImplausible,
    DoorChanged,
    Event,
    GateLink,
    LinkError,
    LinkState,
    NotAuthentic,
    OptOutPressed,
)
from firmware_bridge.protocol import Indicator, LinkKeys, MsgType, Result, pack_relay_pulse
from firmware_bridge.simulator import Simulator
from testbed.runs import wait_for

KEY = b"link-test-key-0123456789abcdef!!"
LONG_PULSE = 20_000  # far longer than any wait below: closing it early proves fail-secure


class Recorder:
    """Collects GateLink events from the event thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        with self._lock:
            self.events.append(ev)

    def of(self, kind: type) -> list[Event]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def sim(interpreter: str) -> Iterator[Simulator]:
    with Simulator(KEY, max_pulse_ms=30_000, interpreter=interpreter) as s:
        yield s


@pytest.fixture
def quiet_sim(interpreter: str) -> Iterator[Simulator]:
    """No link timeout, so tests can count individual frames deterministically."""
    with Simulator(KEY, heartbeat_timeout_ms=600_000, interpreter=interpreter) as s:
        yield s


def open_link(sim: Simulator, key: bytes = KEY, **kw: float) -> tuple[GateLink, Recorder]:
    rec = Recorder()
    link = GateLink(sim.port, key, **kw)
    link.on_event(rec)
    link.open()
    return link, rec


@pytest.fixture
def link(sim: Simulator) -> Iterator[tuple[GateLink, Recorder]]:
    lk, rec = open_link(sim)
    yield lk, rec
    lk.close()


@pytest.fixture
def quiet_link(quiet_sim: Simulator) -> Iterator[GateLink]:
    """Heartbeats effectively off: every frame on the line is the test's own."""
    lk, _ = open_link(quiet_sim, heartbeat_interval=600, ack_timeout=0.4)
    yield lk
    lk.close()


def test_hello_establishes_session(sim: Simulator, link: tuple[GateLink, Recorder]) -> None:
    lk, rec = link
    assert lk.link_up
    assert sim.session
    assert sim.indicator == Indicator.OFF  # OUT_OF_SERVICE left on HELLO
    lk.hello()  # idempotent
    assert wait_for(lambda: LinkState(True) in rec.events)
    assert lk.epoch == 0 and lk.counter == 0 and lk.counter_fault is None


def test_every_command(sim: Simulator, link: tuple[GateLink, Recorder]) -> None:
    lk, _ = link
    for pattern in Indicator.ALL:
        lk.set_indicator(pattern)
        assert sim.indicator == pattern
        assert lk.request_status().indicator == pattern
    lk.buzzer(120)
    assert sim.buzzes == [120]
    lk.pulse_relay(LONG_PULSE)
    status = lk.request_status()
    assert status.relay_open and status.heartbeat_ok
    assert status.last_counter == lk.counter == sim.last_counter
    lk.close_relay()
    assert not sim.relay_open
    assert not lk.request_status().relay_open
    with pytest.raises(ValueError):
        lk.set_indicator(42)


def test_button_and_door_events_reach_callback(
    sim: Simulator, link: tuple[GateLink, Recorder]
) -> None:
    _, rec = link
    sim.press_opt_out()
    sim.set_door(True)
    sim.set_door(False)
    assert wait_for(lambda: len(rec.of(OptOutPressed)) == 1)
    assert wait_for(lambda: rec.of(DoorChanged) == [DoorChanged(True), DoorChanged(False)])


def test_relay_pulse_opens_then_closes(sim: Simulator, link: tuple[GateLink, Recorder]) -> None:
    lk, _ = link
    lk.pulse_relay(300)
    assert sim.relay_pulses == [300]
    assert wait_for(lambda: sim.relay_history == [True, False])
    assert not sim.relay_open


def test_a_host_with_another_key_gets_nowhere(sim: Simulator) -> None:
    """The MCU's answers do not verify under another key, so that host never has a
    session to use; and its pulses are refused all the same."""
    with pytest.raises(NotAuthentic, match="another relay key"):
        open_link(sim, key=b"not-the-gate-key-000000000000000")
    lk, _ = open_link(sim)
    try:
        other = LinkKeys(b"not-the-gate-key-000000000000000")
        forged = pack_relay_pulse(other, 0, 500, 1, session=lk.request_status().session, n=1)
        assert lk.send_command(MsgType.RELAY_PULSE, forged) == Result.REJECTED_AUTH
    finally:
        lk.close()
    assert sim.relay_history == [] and sim.relay_pulses == []


def test_replayed_pulse_rejected(sim: Simulator, link: tuple[GateLink, Recorder]) -> None:
    """Re-sending a validly signed pulse of this session with a used counter (new seq, a
    fresh command number) must not reopen the gate: the counter is spent."""
    lk, _ = link
    lk.pulse_relay(200)
    session = lk.request_status().session
    captured = pack_relay_pulse(LinkKeys(KEY), 0, 200, lk.counter, session=session, n=1 << 30)
    assert wait_for(lambda: not sim.relay_open)
    assert lk.send_command(MsgType.RELAY_PULSE, captured) == Result.REJECTED_STALE
    older = pack_relay_pulse(LinkKeys(KEY), 0, 200, lk.counter - 1, session=session, n=1 << 30)
    assert lk.send_command(MsgType.RELAY_PULSE, older) == Result.REJECTED_STALE
    assert sim.relay_pulses == [200]
    assert sim.relay_history == [True, False]


def test_counter_resyncs_for_new_host_run(sim: Simulator) -> None:
    """A restarted host (counter_start=0) learns the MCU's counter and stays fresh."""
    lk, _ = open_link(sim, counter_start=1000)
    lk.pulse_relay(100)
    lk.close()
    lk2, _ = open_link(sim)
    try:
        assert lk2.counter == 1001
        lk2.pulse_relay(100)
        assert sim.last_counter == 1002
        assert sim.relay_pulses == [100, 100]
    finally:
        lk2.close()


def test_retransmission_after_dropped_frame(quiet_sim: Simulator, quiet_link: GateLink) -> None:
    quiet_sim.drop_next(1)
    quiet_link.set_indicator(Indicator.GRANTED)
    assert quiet_sim.frames_dropped == 1
    assert quiet_link.retransmissions == 1
    assert quiet_sim.indicator == Indicator.GRANTED


def test_lost_ack_does_not_pulse_twice(quiet_sim: Simulator, quiet_link: GateLink) -> None:
    quiet_sim.drop_next_reply(1)
    quiet_link.pulse_relay(250)
    assert quiet_link.retransmissions == 1
    assert quiet_sim.duplicates == 1
    assert quiet_sim.relay_pulses == [250]


def test_corrupted_frame_detected_and_retransmitted(
    quiet_sim: Simulator, quiet_link: GateLink
) -> None:
    before = quiet_sim.rx_errors
    quiet_sim.corrupt_next(1)
    quiet_link.set_indicator(Indicator.CAPTURING)
    assert quiet_sim.frames_corrupted == 1
    assert quiet_sim.rx_errors == before + 1
    assert quiet_link.retransmissions == 1
    assert quiet_sim.indicator == Indicator.CAPTURING


def test_link_error_after_retries(quiet_sim: Simulator, quiet_link: GateLink) -> None:
    quiet_sim.drop_next(quiet_link.retries + 1)
    with pytest.raises(LinkError, match="no ACK"):
        quiet_link.buzzer(10)
    assert not quiet_link.link_up
    assert quiet_sim.buzzes == []


def test_fail_secure_when_host_stops(sim: Simulator) -> None:
    lk, _ = open_link(sim)
    lk.set_indicator(Indicator.GRANTED)
    lk.pulse_relay(LONG_PULSE)
    assert sim.relay_open
    lk.close()  # heartbeats stop; no RELAY_CLOSE is sent
    assert wait_for(lambda: not sim.relay_open)
    assert sim.indicator == Indicator.OUT_OF_SERVICE
    assert not sim.session


def test_fail_secure_on_cable_cut_then_recovers(
    sim: Simulator, link: tuple[GateLink, Recorder]
) -> None:
    lk, rec = link
    lk.pulse_relay(LONG_PULSE)
    sim.pause_link(1.5)
    assert wait_for(lambda: not sim.relay_open)
    assert sim.indicator == Indicator.OUT_OF_SERVICE
    assert wait_for(lambda: LinkState(False) in rec.events)
    # Heartbeat thread re-establishes the session on its own once the line is back.
    assert wait_for(lambda: lk.link_up and sim.session)
    assert wait_for(lambda: rec.of(LinkState)[-1] == LinkState(True))
    assert sim.relay_history == [True, False]


def test_reboot_mid_pulse(sim: Simulator, link: tuple[GateLink, Recorder]) -> None:
    lk, rec = link
    lk.pulse_relay(LONG_PULSE)
    assert sim.relay_open
    sim.reboot()
    assert wait_for(lambda: not sim.relay_open)
    assert wait_for(lambda: len(rec.of(Boot)) == 1)
    assert wait_for(lambda: lk.link_up and sim.session)
    lk.pulse_relay(100)  # counter still fresh for the rebooted MCU
    assert sim.relay_pulses == [LONG_PULSE, 100]


def test_port_vanishing_reports_link_down(sim: Simulator, link: tuple[GateLink, Recorder]) -> None:
    lk, rec = link
    sim.stop()
    assert wait_for(lambda: LinkState(False) in rec.events)
    assert not lk.link_up
    with pytest.raises(LinkError):
        lk.buzzer(10)


def test_reconnects_when_port_comes_back(tmp_path: Path, interpreter: str) -> None:
    """USB-serial style unplug/replug: the device path disappears and returns."""
    port = tmp_path / "ttyGATE"
    with Simulator(KEY, interpreter=interpreter) as first:
        os.symlink(first.port, port)
        rec = Recorder()
        lk = GateLink(str(port), KEY)
        lk.on_event(rec)
        lk.open()
    try:
        assert wait_for(lambda: LinkState(False) in rec.events)  # first sim stopped
        with Simulator(KEY, interpreter=interpreter) as second:
            port.unlink()
            os.symlink(second.port, port)
            assert wait_for(lambda: lk.link_up and second.session)
            lk.pulse_relay(100)
            assert second.relay_pulses == [100]
            expected = [LinkState(True), LinkState(False), LinkState(True)]
            assert wait_for(lambda: rec.of(LinkState) == expected)
    finally:
        lk.close()


def poison(sim: Simulator, counter: int) -> None:
    """Leave the MCU's counter at ``counter`` with a genuinely signed pulse, as a version
    1 host did after a forged STATUS (or a host with the key that misbehaves)."""
    lk, _ = open_link(sim)
    try:
        # A command number no host command of this session reaches before it closes.
        session = lk.request_status().session
        pulse = pack_relay_pulse(
            LinkKeys(KEY), lk.epoch or 0, 100, counter, session=session, n=1 << 30
        )
        assert lk.send_command(MsgType.RELAY_PULSE, pulse) == Result.OK
    finally:
        lk.close()
    assert wait_for(lambda: not sim.relay_open)


def test_a_poisoned_counter_puts_the_gate_out_of_service_until_a_new_epoch(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A counter near its end, even an authentic one, is never used: the link stays down,
    the MCU shut and red, one journal line says what to do, and no pulse is written to
    the MCU. Starting a new epoch (what `gatectl provision --rotate` runs) gets the
    gate back without any value from the line, and the next grant pulses."""
    poison(sim, 0xFFFFFFFE)
    pulses_before = sim.relay_pulses
    caplog.set_level(logging.ERROR, logger="firmware_bridge.host")
    lk, rec = open_link(sim)
    try:
        assert not lk.link_up and "gatectl provision --rotate" in (lk.counter_fault or "")
        assert wait_for(lambda: sim.indicator == Indicator.OUT_OF_SERVICE)
        with pytest.raises(CounterImplausible, match="at its end"):
            lk.hello()
        with pytest.raises(CounterImplausible):
            lk.pulse_relay(100)
        assert sim.relay_pulses == pulses_before and sim.last_counter == 0xFFFFFFFE
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "gate out of service" in errors[0].getMessage()
        before, after = lk.start_new_epoch()
        assert (before.epoch, before.last_counter) == (0, 0xFFFFFFFE)
        assert (after.epoch, after.last_counter) == (1, 0)
        assert lk.link_up and lk.counter_fault is None
        lk.pulse_relay(100)
        assert sim.relay_pulses == [*pulses_before, 100]
        assert (sim.epoch, sim.last_counter) == (1, 1)
        assert wait_for(lambda: rec.of(LinkState)[-1:] == [LinkState(True)])  # event thread
    finally:
        lk.close()


def test_a_second_driver_on_the_same_port_is_refused_by_name(sim):
    """One instance per port: a second GateLink (another service, a serial test) is told
    who holds it instead of interleaving its frames with the first one's."""
    first = GateLink(sim.port, KEY).open()
    try:
        with pytest.raises(LinkError, match="held by another process"):
            GateLink(sim.port, KEY).open()
        assert first.request_status() is not None  # the first driver is undisturbed
    finally:
        first.close()

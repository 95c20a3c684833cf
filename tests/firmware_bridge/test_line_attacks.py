"""Attacks from the serial line, through the real parts: GateLink on one pty, the simulated
MCU on another, and a LineTap (a man in the middle who never has the relay key) between.

Issue 11, item 3: with protocol version 1 one injected STATUS saying ``last_counter =
0xFFFFFFFE`` during the greeting after a reboot pushed the host's counter to its end; the
MCU stored it and every later grant failed, for good. An injected RELAY_CLOSE cut a pulse
short and an injected INDICATOR showed green with the relay shut. Each test here reproduces
one of them and passes only because version 2 authenticates what steers the other side.
"""

import struct
from collections.abc import Iterator

import pytest

from firmware_bridge.host import GateLink, LinkState
from firmware_bridge.protocol import (
    STATUS_BODY_LEN,
    Frame,
    Indicator,
    LinkKeys,
    MsgType,
    pack_relay_pulse,
)
from firmware_bridge.relay_counter import MAX_COUNTER_JUMP
from firmware_bridge.simulator import LineTap, Simulator
from testbed.runs import wait_for
from tests.firmware_bridge.test_link import KEY, Recorder

POISON = 0xFFFFFFFE
COUNTER_AT = slice(7, 11)  # last_counter inside a STATUS payload (PROTOCOL.md)


@pytest.fixture
def sim(interpreter: str) -> Iterator[Simulator]:
    with Simulator(KEY, max_pulse_ms=30_000, interpreter=interpreter) as s:
        yield s


@pytest.fixture
def tap(sim: Simulator) -> Iterator[LineTap]:
    with LineTap(sim.port) as t:
        yield t


@pytest.fixture
def link(tap: LineTap) -> Iterator[tuple[GateLink, Recorder]]:
    rec = Recorder()
    lk = GateLink(tap.port, KEY)
    lk.on_event(rec)
    lk.open()
    yield lk, rec
    lk.close()


def with_counter(frame: Frame, counter: int) -> Frame:
    """The STATUS ``frame`` saying ``counter``: a fresh CRC, the MCU's tag left as it was."""
    payload = bytearray(frame.payload)
    payload[COUNTER_AT] = struct.pack(">I", counter)
    return Frame(frame.msg_type, frame.seq, bytes(payload))


def poisoned_status(frame: Frame) -> Frame | list[Frame]:
    """The issue's attack: a STATUS at the end of the counter goes to the host first."""
    if frame.msg_type != MsgType.STATUS:
        return frame
    return [with_counter(frame, POISON), frame]


def greet_after_reboot(sim: Simulator, lk: GateLink, rec: Recorder) -> None:
    ups = len(rec.of(LinkState))
    sim.reboot()
    assert wait_for(lambda: len(rec.of(LinkState)) >= ups + 2 and lk.link_up, timeout=10)


def test_a_forged_status_in_the_greeting_after_a_reboot_is_never_adopted(
    sim: Simulator, tap: LineTap, link: tuple[GateLink, Recorder]
) -> None:
    lk, rec = link
    lk.pulse_relay(100)
    assert wait_for(lambda: not sim.relay_open)
    tap.rewrite_to_host(poisoned_status)
    greet_after_reboot(sim, lk, rec)
    assert tap.rewritten >= 1 and lk.forged_status >= 1  # the forgery did reach the host
    assert lk.counter == 1 and lk.counter_fault is None
    tap.rewrite_to_host(None)
    lk.pulse_relay(100)  # the next grant pulses, with the next counter
    assert sim.relay_pulses == [100, 100]
    assert (sim.epoch, sim.last_counter) == (0, 2)


def test_an_old_authentic_status_is_not_replayable(
    sim: Simulator, tap: LineTap, link: tuple[GateLink, Recorder]
) -> None:
    """A STATUS the MCU really sent answers that greeting's nonce only: sent again in a
    later greeting (even with nothing changed in it) it does not verify."""
    lk, rec = link
    (old,) = [f for f in tap.frames_from_mcu() if f.msg_type == MsgType.STATUS][:1]
    assert len(old.payload) > STATUS_BODY_LEN
    tap.rewrite_to_host(lambda f: [old, f] if f.msg_type == MsgType.STATUS else f)
    forged_before = lk.forged_status
    greet_after_reboot(sim, lk, rec)
    assert lk.forged_status > forged_before
    assert lk.counter_fault is None and lk.counter == 0


def test_a_line_that_only_carries_forged_status_keeps_the_gate_shut(
    sim: Simulator, tap: LineTap, link: tuple[GateLink, Recorder]
) -> None:
    """If every STATUS is rewritten the host has no counter it may use: the link stays
    down (the attacker can cut a wire too), the MCU's counter is never pushed, and once
    the line is clean again the gate comes back by itself."""
    lk, rec = link
    tap.rewrite_to_host(lambda f: with_counter(f, POISON) if f.msg_type == MsgType.STATUS else f)
    sim.reboot()
    assert wait_for(lambda: LinkState(False) in rec.events)
    assert wait_for(lambda: lk.forged_status >= 4)
    assert not lk.link_up and sim.last_counter == 0 and sim.relay_pulses == []
    tap.rewrite_to_host(None)
    assert wait_for(lambda: lk.link_up, timeout=10)
    lk.pulse_relay(100)
    assert sim.relay_pulses == [100] and sim.last_counter == 1


def test_a_pulse_from_an_earlier_host_run_is_a_jump_the_host_does_not_follow(
    sim: Simulator, tap: LineTap, link: tuple[GateLink, Recorder]
) -> None:
    """Within one host run the MCU's counter can only be where this host's pulses put it
    (plus a little slack): a big jump, authentic or not, is refused, never followed, and
    the gate goes out of service with the reason."""
    lk, _ = link
    lk.pulse_relay(100)
    assert wait_for(lambda: not sim.relay_open)
    # Signed with the key (so not an attacker's: a second program with the key on the
    # port), injected between the host's frames.
    far = lk.counter + MAX_COUNTER_JUMP + 10
    tap.inject_to_mcu(
        Frame(MsgType.RELAY_PULSE, 0, pack_relay_pulse(LinkKeys(KEY), 0, 50, far)).encode()
    )
    assert wait_for(lambda: sim.last_counter == far)
    with pytest.raises(Exception, match="jumped"):
        lk.pulse_relay(100)  # REJECTED_STALE, then the resync refuses the jump
    assert not lk.link_up and "jumped" in (lk.counter_fault or "")
    assert sim.relay_pulses == [100, 50]
    assert wait_for(lambda: sim.indicator == Indicator.OUT_OF_SERVICE)


@pytest.mark.parametrize("how", ["unauthenticated", "replayed"])
def test_injected_relay_close_and_indicator_change_nothing(
    sim: Simulator, tap: LineTap, link: tuple[GateLink, Recorder], how: str
) -> None:
    """During a grant, a RELAY_CLOSE and an INDICATOR(GRANTED) from the line (version 1's
    plain layout, or the host's own earlier frames recorded and sent again) neither cut the
    pulse short nor show green: the MCU answers them REJECTED and does nothing."""
    lk, _ = link
    lk.set_indicator(Indicator.GRANTED)
    lk.close_relay()
    recorded = {f.msg_type: f for f in tap.frames_from_host()}  # the last of each type
    lk.set_indicator(Indicator.SEE_AGENT)
    lk.pulse_relay(20_000)
    assert wait_for(lambda: sim.relay_open)
    if how == "unauthenticated":
        close = Frame(MsgType.RELAY_CLOSE, 7, b"")
        green = Frame(MsgType.INDICATOR, 8, bytes([Indicator.GRANTED]))
    else:
        close = Frame(MsgType.RELAY_CLOSE, 7, recorded[MsgType.RELAY_CLOSE].payload)
        green = Frame(MsgType.INDICATOR, 8, recorded[MsgType.INDICATOR].payload)
    for frame in (close, green):
        tap.inject_to_mcu(frame.encode())
    acks = lambda: [  # noqa: E731 - read after the MCU answered
        f for f in tap.frames_from_mcu() if f.msg_type == MsgType.ACK and f.payload[0] in (7, 8)
    ]
    assert wait_for(lambda: len(acks()) == 2)
    assert all(f.payload[1] != 0 for f in acks())  # none is OK
    assert sim.relay_open and sim.indicator == Indicator.SEE_AGENT
    lk.close_relay()  # the host's own close still works
    assert wait_for(lambda: not sim.relay_open)

"""Attacks from the serial line, through the real parts: GateLink on one pty, the simulated
MCU on another, and a LineTap (a man in the middle who never has the relay key) between.

Issue 11, item 3: with protocol version 1 one injected STATUS saying ``last_counter =
0xFFFFFFFE`` during the greeting after a reboot pushed the host's counter to its end; the
MCU stored it and every later grant failed, for good. An injected RELAY_CLOSE cut a pulse
short and an injected INDICATOR showed green with the relay shut. Each test here reproduces
one of them and passes only because version 2 authenticates what steers the other side.
"""

import logging
import struct
from collections.abc import Iterator

import pytest

from firmware_bridge.host import GateLink, LinkError, LinkState
from firmware_bridge.protocol import (
    STATUS_BODY_LEN,
    Frame,
    Indicator,
    LinkKeys,
    MsgType,
    Result,
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
    session = lk.request_status().session
    pulse = pack_relay_pulse(LinkKeys(KEY), 0, 50, far, session=session, n=1 << 30)
    tap.inject_to_mcu(Frame(MsgType.RELAY_PULSE, 0, pulse).encode())
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
    # Sequence numbers half the ring away from the host's (which starts at random): a
    # host frame with the same seq would be ACKed too, or taken for a duplicate.
    seqs = [(tap.frames_from_host()[-1].seq + 128 + i) & 0xFF for i in (0, 1)]
    if how == "unauthenticated":
        close = Frame(MsgType.RELAY_CLOSE, seqs[0], b"")
        green = Frame(MsgType.INDICATOR, seqs[1], bytes([Indicator.GRANTED]))
    else:
        close = Frame(MsgType.RELAY_CLOSE, seqs[0], recorded[MsgType.RELAY_CLOSE].payload)
        green = Frame(MsgType.INDICATOR, seqs[1], recorded[MsgType.INDICATOR].payload)
    before = len(tap.frames_from_mcu())
    for frame in (close, green):
        tap.inject_to_mcu(frame.encode())

    def acks() -> list[Frame]:  # read after the MCU answered
        return [
            f
            for f in tap.frames_from_mcu()[before:]
            if f.msg_type == MsgType.ACK and f.payload[0] in seqs
        ]

    assert wait_for(lambda: len(acks()) == 2)
    assert all(f.payload[1] != 0 for f in acks())  # none is OK
    assert sim.relay_open and sim.indicator == Indicator.SEE_AGENT
    lk.close_relay()  # the host's own close still works
    assert wait_for(lambda: not sim.relay_open)


class PulseHolder:
    """The attacker's rewrite of the host's frames: every RELAY_PULSE (each retransmission
    too) is held back, everything else goes through untouched."""

    def __init__(self, *also: int) -> None:
        self.held: list[Frame] = []
        self.types = (MsgType.RELAY_PULSE, *also)

    def __call__(self, frame: Frame) -> Frame | None:
        if frame.msg_type in self.types:
            self.held.append(frame)
            return None
        return frame


def mcu_answers_to(tap: LineTap, frame: Frame, before: int) -> list[int]:
    """Results of the ACKs the MCU sent for ``frame``'s seq, past the first ``before``."""
    acks = [
        f.payload[1]
        for f in tap.frames_from_mcu()
        if f.msg_type == MsgType.ACK and f.payload[0] == frame.seq
    ]
    return acks[before:]


def test_a_withheld_pulse_delivered_later_opens_nothing(
    sim: Simulator,
    tap: LineTap,
    link: tuple[GateLink, Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The review's attack: the man in the middle holds back the host's genuine pulse, lets
    the host give up on it (no ACK: the host reports the failure and refers the traveller),
    lets the session carry on, and delivers the pulse later, when it likes. Version 2's MCU
    took it (fresh counter, valid tag, same epoch) and opened the gate with the host's
    records saying it had failed. The pulse is now bound to the session it was sent in
    (the host greets again when a pulse goes unanswered) and to its place in it (any later
    command makes it stale), so it opens nothing."""
    lk, _ = link
    holder = PulseHolder()
    tap.rewrite_to_mcu(holder)
    with (
        caplog.at_level(logging.WARNING, logger="firmware_bridge.host"),
        pytest.raises(LinkError, match="RELAY_PULSE"),
    ):
        lk.pulse_relay(20_000)
    tap.rewrite_to_mcu(None)
    assert holder.held and all(f == holder.held[0] for f in holder.held)
    assert "never taken by the MCU" in caplog.text
    assert wait_for(lambda: lk.link_up)  # the gate carries on, with a live session
    lk.set_indicator(Indicator.READY)
    assert sim.relay_pulses == []
    (pulse,) = holder.held[:1]
    before = len(mcu_answers_to(tap, pulse, 0))
    tap.inject_to_mcu(pulse.encode())  # the moment of the attacker's choosing
    assert wait_for(lambda: mcu_answers_to(tap, pulse, before))
    assert mcu_answers_to(tap, pulse, before)[0] != Result.OK
    assert sim.relay_pulses == [] and not sim.relay_open
    lk.pulse_relay(100)  # the next grant still pulses, past the held pulse's counter
    assert sim.relay_pulses == [100] and sim.last_counter > lk.counter - 1 >= 1


def test_a_withheld_pulse_stays_dead_when_the_greeting_is_withheld_too(
    sim: Simulator,
    tap: LineTap,
    link: tuple[GateLink, Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The attacker also holds back the host's greetings: the host says the pulse's fate
    is open, sends nothing but greetings, so the MCU's session runs out on its link timer;
    once a greeting gets through the host logs that the pulse was never taken, and the
    held pulse, delivered then, opens nothing."""
    lk, _ = link
    holder = PulseHolder(MsgType.HELLO)
    tap.rewrite_to_mcu(holder)
    with pytest.raises(LinkError, match="did not answer a new greeting"):
        lk.pulse_relay(20_000)
    assert wait_for(lambda: not sim.session)  # the MCU's link timer ended the session
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.host"):
        tap.rewrite_to_mcu(None)
        assert wait_for(lambda: lk.link_up, timeout=10)
    assert "never taken by the MCU" in caplog.text
    (pulse,) = [f for f in holder.held if f.msg_type == MsgType.RELAY_PULSE][:1]
    before = len(mcu_answers_to(tap, pulse, 0))
    tap.inject_to_mcu(pulse.encode())
    assert wait_for(lambda: mcu_answers_to(tap, pulse, before))
    assert mcu_answers_to(tap, pulse, before)[0] != Result.OK
    assert sim.relay_pulses == [] and not sim.relay_open


def test_a_pulse_whose_acks_are_dropped_is_found_taken_by_the_greeting(
    sim: Simulator,
    tap: LineTap,
    link: tuple[GateLink, Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The other half: the MCU took the pulse and the attacker dropped every ACK of it.
    The host's greeting after the timeout reads the MCU's authenticated counter, so the
    host knows the gate opened: ``pulse_relay`` returns and the journal says why."""
    lk, _ = link
    pulse_seqs: set[int] = set()

    def note_pulses(frame: Frame) -> Frame:
        if frame.msg_type == MsgType.RELAY_PULSE:
            pulse_seqs.add(frame.seq)
        return frame

    tap.rewrite_to_mcu(note_pulses)
    tap.rewrite_to_host(
        lambda f: None if f.msg_type == MsgType.ACK and f.payload[0] in pulse_seqs else f
    )
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.host"):
        lk.pulse_relay(100)
    assert sim.relay_pulses == [100] and tap.rewritten >= 4
    assert "its ACK was lost, but the MCU" in caplog.text
    assert lk.link_up

"""The firmware's protocol behaviour, checked on CPython and on the real MicroPython.

Each test drives the firmware and its board through their byte interface (``feed``,
``tick``) with a manual clock, once per interpreter (the ``interpreter`` fixture), so
fail-secure timing is checked without sleeping and a difference between the two
interpreters fails a test instead of hiding. The frames are built and checked by the
host's protocol code on CPython: a frame MicroPython encodes differently, or a tag it
computes differently, fails here.
"""

import itertools
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    FaultCode,
    Frame,
    FrameDecoder,
    Indicator,
    LinkKeys,
    MsgType,
    ResetCause,
    Result,
    pack_buzzer,
    pack_indicator,
    pack_new_epoch,
    pack_relay_pulse,
    pack_session_command,
    relay_tag,
    unpack_ack,
    unpack_boot,
    unpack_u8,
)
from firmware_bridge.simulator import INTERPRETERS, open_firmware
from firmware_bridge.simulator.backends import SimulatedFirmware
from firmware_bridge.tools.host_frames import HostFrames

KEY = b"unit-test-key-0123456789abcdef!!"
ATTACKER = LinkKeys(b"attacker-key-000000000000000000!")


class Mcu:
    """The firmware plus the host's half of the protocol (``HostFrames``)."""

    def __init__(self, firmware: SimulatedFirmware) -> None:
        self.fw = firmware
        self.rx = FrameDecoder()
        self.host = HostFrames(KEY, nonces=b"conformance")
        self.boot_frames = self.rx.feed(firmware.boot(ResetCause.POWER_ON))

    @property
    def relay_open(self) -> bool:
        return self.fw.state.relay_open

    @property
    def pattern(self) -> int:
        return self.fw.state.indicator

    @property
    def pulses(self) -> list[int]:
        return self.fw.outputs.relay_pulses

    def send(self, msg_type: int, payload: bytes = b"", seq: int | None = None) -> list[Frame]:
        return self.rx.feed(self.fw.feed(self.host.frame(msg_type, payload, seq)))

    def result(self, msg_type: int, payload: bytes = b"", seq: int | None = None) -> int:
        replies = self.send(msg_type, payload, seq)
        assert replies[0].msg_type == MsgType.ACK
        acked, result = unpack_ack(replies[0].payload)
        assert acked == (self.host.seq - 1 if seq is None else seq) & 0xFF
        return result

    def hello(self) -> int:
        """HELLO with a fresh nonce; the answer's STATUS must verify and starts the session."""
        ack, *rest = self.send(MsgType.HELLO, self.host.fresh_nonce())
        result = unpack_ack(ack.payload)[1]
        if result == Result.OK:
            (status,) = rest
            assert self.host.read_status(status, greeting=True) is not None
        return result

    def status(self) -> tuple:
        ack, frame = self.send(MsgType.STATUS_REQUEST, self.host.fresh_nonce())
        assert unpack_ack(ack.payload)[1] == Result.OK
        status = self.host.read_status(frame)
        assert status is not None, "STATUS did not verify"
        return status

    def cmd(self, msg_type: int, body: bytes = b"") -> int:
        """A session command of the current session, numbered and tagged."""
        return self.result(msg_type, self.host.session_command(msg_type, body))

    def pulse(self, ms: int, counter: int, keys: LinkKeys | None = None) -> int:
        if keys is None:
            return self.result(MsgType.RELAY_PULSE, self.host.relay_pulse(ms, counter))
        return self.result(
            MsgType.RELAY_PULSE, pack_relay_pulse(keys, self.host.epoch, ms, counter)
        )

    def tick(self, advance_ms: int = 0) -> list[Frame]:
        return self.rx.feed(self.fw.tick(advance_ms))


@pytest.fixture
def fresh(interpreter: str) -> Iterator[Mcu]:
    """Just booted: no session yet."""
    firmware = open_firmware(interpreter, KEY, manual_clock=True)
    try:
        yield Mcu(firmware)
    finally:
        firmware.close()


@pytest.fixture
def mcu(fresh: Mcu) -> Mcu:
    assert fresh.hello() == Result.OK
    return fresh


def test_boot_is_secure_and_announced(fresh: Mcu) -> None:
    assert not fresh.relay_open
    assert fresh.pattern == Indicator.OUT_OF_SERVICE
    (boot,) = fresh.boot_frames
    assert boot.msg_type == MsgType.BOOT
    version, cause = unpack_boot(boot.payload)
    assert version == "gatefw-ref 2.0" and cause == ResetCause.POWER_ON
    assert fresh.hello() == Result.OK
    assert fresh.pattern == Indicator.OFF


def test_short_key_is_refused(interpreter: str) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        open_firmware(interpreter, b"too-short")


def test_commands_require_a_session(fresh: Mcu) -> None:
    assert fresh.pulse(500, 1) == Result.REJECTED_BAD
    assert fresh.cmd(MsgType.HEARTBEAT) == Result.REJECTED_BAD
    assert fresh.cmd(MsgType.INDICATOR, pack_indicator(Indicator.GRANTED)) == Result.REJECTED_BAD
    assert not fresh.relay_open and fresh.pattern == Indicator.OUT_OF_SERVICE


def test_status_answers_the_hosts_nonce_only(mcu: Mcu) -> None:
    """A STATUS verifies only for the nonce it answers and with every byte as sent: a
    STATUS recorded earlier, or one with a counter changed on the line, is worthless."""
    first = mcu.send(MsgType.STATUS_REQUEST, mcu.host.fresh_nonce())[1]
    assert mcu.host.read_status(first) is not None
    mcu.host.fresh_nonce()  # the next request's nonce
    assert mcu.host.read_status(first) is None  # replayed: answers another nonce
    again = mcu.send(MsgType.STATUS_REQUEST, mcu.host.nonce)[1]
    for i in range(len(again.payload)):
        forged = bytearray(again.payload)
        forged[i] ^= 0x01
        assert mcu.host.read_status(Frame(again.msg_type, again.seq, bytes(forged))) is None
    assert mcu.host.read_status(Frame(again.msg_type, again.seq ^ 1, again.payload)) is None
    assert mcu.host.read_status(again) is not None
    assert mcu.result(MsgType.STATUS_REQUEST, b"\x00" * 7) == Result.REJECTED_BAD


def test_valid_pulse_opens_then_closes(mcu: Mcu) -> None:
    assert mcu.pulse(500, 1) == Result.OK
    assert mcu.relay_open and mcu.pulses == [500]
    mcu.tick(499)
    assert mcu.relay_open
    mcu.tick(1)
    assert not mcu.relay_open
    assert mcu.fw.outputs.relay_history == [True, False]


def test_pulse_is_capped(mcu: Mcu) -> None:
    assert mcu.pulse(60_000, 1) == Result.OK
    assert mcu.pulses == [5000]
    mcu.tick(5000)
    assert not mcu.relay_open


def test_forged_tag_rejected(mcu: Mcu) -> None:
    assert mcu.pulse(500, 1, keys=ATTACKER) == Result.REJECTED_AUTH
    payload = bytearray(mcu.host.relay_pulse(500, 1))
    payload[0] ^= 0x10  # longer duration than was signed
    assert mcu.result(MsgType.RELAY_PULSE, bytes(payload)) == Result.REJECTED_AUTH
    other_epoch = pack_relay_pulse(mcu.host.keys, mcu.host.epoch + 1, 500, 2)
    assert mcu.result(MsgType.RELAY_PULSE, other_epoch) == Result.REJECTED_AUTH
    assert not mcu.relay_open and mcu.pulses == []


def test_stale_counter_rejected(mcu: Mcu) -> None:
    assert mcu.pulse(100, 5) == Result.OK
    assert mcu.pulse(100, 5) == Result.REJECTED_STALE  # replay with a new seq
    assert mcu.pulse(100, 4) == Result.REJECTED_STALE
    assert mcu.pulse(100, 6) == Result.OK
    assert mcu.pulses == [100, 100]


def test_bad_payloads_get_rejected_bad(mcu: Mcu) -> None:
    assert mcu.cmd(MsgType.INDICATOR, b"\x63") == Result.REJECTED_BAD
    assert mcu.result(MsgType.RELAY_PULSE, b"\x00\x01") == Result.REJECTED_BAD
    assert mcu.pulse(0, 1) == Result.REJECTED_BAD
    assert mcu.result(MsgType.HELLO, b"\x00") == Result.REJECTED_BAD
    assert mcu.result(MsgType.RELAY_CLOSE) == Result.REJECTED_BAD  # version 1's empty close
    assert mcu.result(MsgType.NEW_EPOCH, b"\x00" * 3) == Result.REJECTED_BAD
    assert mcu.pattern == Indicator.OFF and not mcu.relay_open


def test_session_commands_are_authenticated_and_fresh(mcu: Mcu) -> None:
    """Relay close, indicator, buzzer and heartbeat carry the session's tag and a number
    that must grow: forged, replayed and other-session commands change nothing."""
    green = pack_indicator(Indicator.GRANTED)
    forged = pack_session_command(ATTACKER, MsgType.INDICATOR, mcu.host.session, 1, green)
    assert mcu.result(MsgType.INDICATOR, forged) == Result.REJECTED_AUTH
    genuine = mcu.host.session_command(MsgType.INDICATOR, pack_indicator(Indicator.READY))
    assert mcu.result(MsgType.INDICATOR, genuine) == Result.OK
    assert mcu.pattern == Indicator.READY
    stretched = bytearray(genuine)
    stretched[0] = Indicator.GRANTED  # the recorded frame with another pattern
    assert mcu.result(MsgType.INDICATOR, bytes(stretched)) == Result.REJECTED_AUTH
    assert mcu.cmd(MsgType.INDICATOR, pack_indicator(Indicator.CAPTURING)) == Result.OK
    assert mcu.result(MsgType.INDICATOR, genuine) == Result.REJECTED_STALE  # replayed
    assert mcu.pattern == Indicator.CAPTURING
    old_session = mcu.host.session_command(MsgType.INDICATOR, green)
    assert mcu.hello() == Result.OK  # a new session: commands numbered from 1 again
    assert mcu.result(MsgType.INDICATOR, old_session) == Result.REJECTED_AUTH
    assert mcu.pattern == Indicator.CAPTURING
    assert mcu.cmd(MsgType.BUZZER, pack_buzzer(250)) == Result.OK
    assert mcu.fw.outputs.buzzes == [250]


def test_relay_close_from_the_line_cannot_cut_a_pulse_short(mcu: Mcu) -> None:
    assert mcu.pulse(3000, 1) == Result.OK
    unsigned = pack_session_command(ATTACKER, MsgType.RELAY_CLOSE, mcu.host.session, 99)
    assert mcu.result(MsgType.RELAY_CLOSE, unsigned) == Result.REJECTED_AUTH
    assert mcu.result(MsgType.RELAY_CLOSE) == Result.REJECTED_BAD
    mcu.tick(40)
    assert mcu.relay_open
    assert mcu.cmd(MsgType.RELAY_CLOSE) == Result.OK  # the host's own close works
    assert not mcu.relay_open


def test_duplicate_command_reacked_not_reexecuted(mcu: Mcu) -> None:
    payload = mcu.host.relay_pulse(300, 1)
    first = mcu.send(MsgType.RELAY_PULSE, payload, seq=40)
    again = mcu.send(MsgType.RELAY_PULSE, payload, seq=40)
    assert unpack_ack(first[0].payload) == (40, Result.OK)
    assert [f.payload for f in again] == [f.payload for f in first]
    assert mcu.pulses == [300]
    assert mcu.fw.state.duplicates == 1


def test_sequence_numbers_count_up_and_wrap(mcu: Mcu) -> None:
    """The MCU's own seq goes up by one per frame it sends and wraps at 256."""
    seqs = []
    for _ in range(300):
        (ack,) = mcu.send(MsgType.HEARTBEAT, mcu.host.session_command(MsgType.HEARTBEAT))
        seqs.append(ack.seq)
    assert all((b - a) % 256 == 1 for a, b in itertools.pairwise(seqs))
    assert 0 in seqs[1:] and 255 in seqs


def test_status_and_simple_commands(mcu: Mcu) -> None:
    assert mcu.cmd(MsgType.INDICATOR, pack_indicator(Indicator.SEE_AGENT)) == Result.OK
    assert mcu.cmd(MsgType.BUZZER, pack_buzzer(250)) == Result.OK
    assert mcu.pulse(1000, 77) == Result.OK
    relay, pattern, heartbeat_ok, epoch, counter, session, _ = mcu.status()
    assert (relay, pattern, heartbeat_ok, epoch, counter) == (
        True,
        Indicator.SEE_AGENT,
        True,
        0,
        77,
    )
    assert session == mcu.host.session
    assert mcu.cmd(MsgType.RELAY_CLOSE) == Result.OK
    assert not mcu.relay_open and mcu.fw.outputs.buzzes == [250]


def test_inputs_are_reported(mcu: Mcu) -> None:
    (opt_out,) = mcu.rx.feed(mcu.fw.press_opt_out())
    assert opt_out.msg_type == MsgType.OPT_OUT_PRESSED
    (door,) = mcu.rx.feed(mcu.fw.set_door(True))
    assert door.msg_type == MsgType.DOOR and unpack_u8(door.payload, "DOOR") == 1
    assert mcu.fw.state.door_open


def test_link_loss_fails_secure_once(mcu: Mcu) -> None:
    assert mcu.pulse(5000, 1) == Result.OK
    mcu.tick(600)
    assert mcu.cmd(MsgType.HEARTBEAT) == Result.OK  # fed: still fine
    assert mcu.tick(1000) == [] and mcu.relay_open
    (fault,) = mcu.tick(1)
    assert fault.msg_type == MsgType.FAULT
    assert unpack_u8(fault.payload, "FAULT") == FaultCode.LINK_LOST
    assert not mcu.relay_open
    assert mcu.pattern == Indicator.OUT_OF_SERVICE
    assert mcu.tick(5000) == []  # FAULT only once
    # Session is gone until HELLO; heartbeats tell the host so.
    assert mcu.cmd(MsgType.HEARTBEAT) == Result.REJECTED_BAD
    assert mcu.pulse(100, 2) == Result.REJECTED_BAD
    assert mcu.hello() == Result.OK
    assert mcu.pulse(100, 2) == Result.OK


def test_only_fresh_authentic_commands_hold_off_link_loss(mcu: Mcu) -> None:
    """With the host gone, nobody on the line keeps the session alive: not the last
    heartbeat sent again, nor forged commands, STATUS requests or HELLOs."""
    assert mcu.pulse(5000, 1) == Result.OK
    heartbeat = mcu.host.frame(MsgType.HEARTBEAT, mcu.host.session_command(MsgType.HEARTBEAT))
    mcu.rx.feed(mcu.fw.feed(heartbeat))
    forged = pack_session_command(ATTACKER, MsgType.HEARTBEAT, mcu.host.session, 1000)
    frames: list[Frame] = []
    for step in range(12):  # 1200 ms of an injector's traffic, every 100 ms
        frames += mcu.tick(100)
        mcu.rx.feed(mcu.fw.feed(heartbeat))  # the recorded frame, as it was
        mcu.send(MsgType.HEARTBEAT, forged)
        mcu.send(MsgType.STATUS_REQUEST, mcu.host.fresh_nonce())
        if step == 5:
            mcu.send(MsgType.HELLO, mcu.host.fresh_nonce())  # does not feed a running session
    faults = [f for f in frames if f.msg_type == MsgType.FAULT]
    assert len(faults) == 1 and unpack_u8(faults[0].payload, "FAULT") == FaultCode.LINK_LOST
    assert not mcu.relay_open and mcu.pulses == [5000]


def test_reboot_mid_pulse_closes_relay_and_keeps_counter(mcu: Mcu) -> None:
    """The counter is in (simulated) flash: a pulse seen before a reset cannot be
    replayed after it. On MicroPython it goes through the board's CounterStore."""
    assert mcu.pulse(3000, 10) == Result.OK
    assert mcu.relay_open
    (boot,) = mcu.rx.feed(mcu.fw.boot(ResetCause.WATCHDOG))
    assert unpack_boot(boot.payload)[1] == ResetCause.WATCHDOG
    assert not mcu.relay_open and mcu.fw.state.last_counter == 10
    assert not mcu.fw.state.session
    assert mcu.hello() == Result.OK
    assert mcu.host.last_counter == 10  # the greeting's STATUS tells the host
    assert mcu.pulse(100, 10) == Result.REJECTED_STALE
    assert mcu.pulse(100, 11) == Result.OK
    assert mcu.fw.outputs.relay_history == [True, False, True]


def test_new_epoch_restarts_the_counter_and_retires_every_old_pulse(mcu: Mcu) -> None:
    """The recovery of a used-up or poisoned counter: epoch + 1, counter 0. Pulses signed
    in the old epoch never open the relay again, whatever their counter, and the epoch
    survives a reboot. Only the key holder can start it, only one step at a time."""
    assert mcu.pulse(100, 0xFFFFFFFE) == Result.OK  # poisoned: one pulse left
    old = [pack_relay_pulse(mcu.host.keys, 0, 100, c) for c in (1, 2, 0xFFFFFFFF)]
    mcu.tick(100)
    assert mcu.result(MsgType.NEW_EPOCH, pack_new_epoch(ATTACKER, 1)) == Result.REJECTED_AUTH
    skip = pack_new_epoch(mcu.host.keys, 2)
    assert mcu.result(MsgType.NEW_EPOCH, skip) == Result.REJECTED_BAD
    rotate = mcu.host.new_epoch()
    assert mcu.result(MsgType.NEW_EPOCH, rotate) == Result.OK
    assert mcu.status()[3:5] == (1, 0)
    assert mcu.result(MsgType.NEW_EPOCH, rotate) == Result.REJECTED_STALE  # replayed
    for payload in old:
        assert mcu.result(MsgType.RELAY_PULSE, payload) == Result.REJECTED_AUTH
    assert mcu.pulse(100, 1) == Result.OK
    mcu.rx.feed(mcu.fw.boot(ResetCause.POWER_ON))
    assert (mcu.fw.state.epoch, mcu.fw.state.last_counter) == (1, 1)
    assert mcu.hello() == Result.OK
    assert mcu.result(MsgType.NEW_EPOCH, rotate) == Result.REJECTED_STALE
    assert mcu.pulse(100, 1) == Result.REJECTED_STALE
    assert mcu.pulses == [100, 100]


def test_garbage_counted_not_answered(mcu: Mcu) -> None:
    assert mcu.fw.feed(b"\x12\x34\x00\xff\x00") == b""
    assert mcu.fw.state.rx_errors == 2


def test_a_corrupted_command_is_never_executed(mcu: Mcu) -> None:
    payload = mcu.host.relay_pulse(300, 1)
    wire = bytearray(Frame(MsgType.RELAY_PULSE, 9, payload).encode())
    for i in range(len(wire) - 1):  # every single-bit error in every data byte
        for bit in range(8):
            flipped = bytearray(wire)
            flipped[i] ^= 1 << bit
            assert mcu.fw.feed(b"\x00" + bytes(flipped)) == b""
    assert mcu.pulses == [] and not mcu.relay_open
    assert mcu.result(MsgType.RELAY_PULSE, payload, seq=10) == Result.OK


@pytest.fixture(scope="module")
def both() -> Iterator[dict[str, SimulatedFirmware]]:
    """One firmware per interpreter for the property tests (starting MicroPython per
    example would be slow); each example reboots them."""
    firmwares: dict[str, SimulatedFirmware] = {}
    try:
        for name in INTERPRETERS:
            firmwares[name] = open_firmware(name, KEY, manual_clock=True)
        yield firmwares
    finally:
        for firmware in firmwares.values():
            firmware.close()


def greet(firmware: SimulatedFirmware) -> HostFrames:
    """Boot ``firmware`` and open a session on it; -> the host's half of that session."""
    host = HostFrames(KEY, nonces=b"property")
    decoder = FrameDecoder()
    decoder.feed(firmware.boot(ResetCause.POWER_ON))
    _, status = decoder.feed(firmware.feed(host.frame(MsgType.HELLO, host.fresh_nonce())))
    assert host.read_status(status, greeting=True) is not None
    return host


@pytest.mark.micropython
@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_frames_split_anywhere_are_reassembled(
    both: dict[str, SimulatedFirmware], data: st.DataObject
) -> None:
    """A UART hands over bytes in arbitrary pieces; the answers do not depend on where."""
    cuts: list[int] | None = None
    for firmware in both.values():
        host = greet(firmware)
        stream = b"".join(
            [
                host.frame(
                    MsgType.INDICATOR,
                    host.session_command(MsgType.INDICATOR, pack_indicator(Indicator.READY)),
                ),
                host.frame(MsgType.STATUS_REQUEST, host.fresh_nonce()),
                host.frame(MsgType.HEARTBEAT, host.session_command(MsgType.HEARTBEAT)),
            ]
        )
        if cuts is None:
            cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        out = b"".join(firmware.feed(piece) for piece in pieces)
        frames = FrameDecoder().feed(out)
        assert [f.msg_type for f in frames] == [MsgType.ACK] * 2 + [MsgType.STATUS, MsgType.ACK]
        acks = [unpack_ack(f.payload) for f in frames if f.msg_type == MsgType.ACK]
        assert acks == [(seq, Result.OK) for seq in range(1, 4)]
        assert host.read_status(frames[2]) is not None
        assert firmware.state.indicator == Indicator.READY


@pytest.mark.micropython
@given(garbage=st.binary(max_size=600))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_firmware_never_opens_relay_on_garbage(
    both: dict[str, SimulatedFirmware], garbage: bytes
) -> None:
    """Fail secure: no byte sequence without the key opens the relay, on either
    interpreter, and both answer the garbage with the same bytes."""
    answers = []
    for firmware in both.values():
        greet(firmware)
        answers.append(firmware.feed(garbage))
        assert not firmware.state.relay_open
    assert len(set(answers)) == 1


BAD_PULSES = st.tuples(
    st.sampled_from(
        ["stale", "random_tag", "flipped_tag", "truncated", "other_key", "other_epoch", "moved"]
    ),
    st.integers(1, 0xFFFF),  # duration
    st.integers(0, 1 << 20),  # how far from the last counter
    st.binary(min_size=16, max_size=16),  # a made-up tag
    st.integers(0, 127),  # which tag bit to flip
    st.integers(0, 15),  # where to cut the tag
    st.integers(1, 0xFFFFFFFF),  # another epoch, as an offset
)


# What the MCU must answer each kind: proof that the frame got past the CRC and the
# parser to the tag check (AUTH) or, with a genuine tag, to the counter check (STALE).
EXPECTED_REFUSAL = {
    "stale": Result.REJECTED_STALE,
    "truncated": Result.REJECTED_BAD,
    "random_tag": Result.REJECTED_AUTH,
    "flipped_tag": Result.REJECTED_AUTH,
    "other_key": Result.REJECTED_AUTH,
    "other_epoch": Result.REJECTED_AUTH,
    "moved": Result.REJECTED_AUTH,
}


def _bad_pulse(spec: tuple, host: HostFrames) -> bytes:
    """A RELAY_PULSE payload that must not open the relay: a genuine tag with a stale
    counter, or a fresh counter under a wrong, truncated, borrowed or other-epoch tag."""
    kind, duration, offset, made_up, bit, cut, epoch_offset = spec
    last = host.last_counter
    fresh = min(last + 1 + offset, 0xFFFFFFFF)
    genuine = relay_tag(host.keys, host.epoch, duration, fresh)
    fields = struct.pack(">HI", duration, fresh)
    if kind == "stale":
        return pack_relay_pulse(host.keys, host.epoch, duration, last - offset % (last + 1))
    if kind == "random_tag":
        return fields + (made_up if made_up != genuine else bytes(a ^ 1 for a in made_up))
    if kind == "flipped_tag":
        tag = bytearray(genuine)
        tag[bit // 8] ^= 1 << (bit % 8)
        return fields + bytes(tag)
    if kind == "truncated":
        return fields + genuine[:cut]
    if kind == "other_key":
        return pack_relay_pulse(ATTACKER, host.epoch, duration, fresh)
    if kind == "other_epoch":
        epoch = (host.epoch + epoch_offset) & 0xFFFFFFFF
        return pack_relay_pulse(host.keys, epoch, duration, fresh)
    # "moved": the genuine tag of one pulse on the fields of another
    other = fresh + 1 if fresh < 0xFFFFFFFF else fresh - 1
    return struct.pack(">HI", duration, other) + genuine


@pytest.mark.micropython
@given(specs=st.lists(BAD_PULSES, min_size=1, max_size=4))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_crc_valid_forged_pulses_never_open_the_relay(
    both: dict[str, SimulatedFirmware], specs: list[tuple]
) -> None:
    """The relay's own check, reached: CRC-valid RELAY_PULSE frames in a live session,
    with wrong, truncated or borrowed tags and old counters, are refused on both
    interpreters, each with the refusal of the check it was made to fail (so the fuzz
    reaches the HMAC and the counter), and a genuine pulse after them opens."""
    answers = []
    for firmware in both.values():
        host = greet(firmware)
        decoder = FrameDecoder()
        ack = decoder.feed(firmware.feed(host.frame(MsgType.RELAY_PULSE, host.relay_pulse(50))))
        assert unpack_ack(ack[0].payload)[1] == Result.OK
        firmware.tick(60)
        opened = firmware.outputs.relay_openings
        results = []
        for spec in specs:
            wire = host.frame(MsgType.RELAY_PULSE, _bad_pulse(spec, host))
            (reply,) = decoder.feed(firmware.feed(wire))
            results.append(unpack_ack(reply.payload)[1])
            assert not firmware.state.relay_open
        assert results == [EXPECTED_REFUSAL[spec[0]] for spec in specs]
        assert firmware.outputs.relay_openings == opened
        answers.append(results)
        control = host.frame(MsgType.RELAY_PULSE, host.relay_pulse(50))
        assert unpack_ack(decoder.feed(firmware.feed(control))[0].payload)[1] == Result.OK
        assert firmware.state.relay_open
        firmware.tick(60)
    assert answers[0] == answers[1]

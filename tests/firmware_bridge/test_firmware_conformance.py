"""The firmware's protocol behaviour, checked on CPython and on the real MicroPython.

Each test drives the firmware and its board through their byte interface (``feed``,
``tick``) with a manual clock, once per interpreter (the ``interpreter`` fixture), so
fail-secure timing is checked without sleeping and a difference between the two
interpreters fails a test instead of hiding. The frames are built and checked by the
host's protocol code on CPython: a frame MicroPython encodes differently, or a tag it
computes differently, fails here.
"""

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    FaultCode,
    Frame,
    FrameDecoder,
    Indicator,
    MsgType,
    ResetCause,
    Result,
    pack_buzzer,
    pack_indicator,
    pack_relay_pulse,
    unpack_ack,
    unpack_boot,
    unpack_status,
    unpack_u8,
)
from firmware_bridge.simulator import INTERPRETERS, open_firmware
from firmware_bridge.simulator.backends import SimulatedFirmware

KEY = b"unit-test-key-0123456789abcdef!!"


class Mcu:
    """The firmware plus a host-side decoder for its replies."""

    def __init__(self, firmware: SimulatedFirmware) -> None:
        self.fw = firmware
        self.rx = FrameDecoder()
        self.seq = 0
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
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
        return self.rx.feed(self.fw.feed(Frame(msg_type, seq, payload).encode()))

    def result(self, msg_type: int, payload: bytes = b"", seq: int | None = None) -> int:
        replies = self.send(msg_type, payload, seq)
        assert replies[0].msg_type == MsgType.ACK
        acked, result = unpack_ack(replies[0].payload)
        assert acked == (self.seq - 1 if seq is None else seq) & 0xFF
        return result

    def pulse(self, ms: int, counter: int, key: bytes = KEY) -> int:
        return self.result(MsgType.RELAY_PULSE, pack_relay_pulse(key, ms, counter))

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
    assert fresh.result(MsgType.HELLO) == Result.OK
    return fresh


def test_boot_is_secure_and_announced(fresh: Mcu) -> None:
    assert not fresh.relay_open
    assert fresh.pattern == Indicator.OUT_OF_SERVICE
    (boot,) = fresh.boot_frames
    assert boot.msg_type == MsgType.BOOT
    version, cause = unpack_boot(boot.payload)
    assert version == "gatefw-ref 1.0" and cause == ResetCause.POWER_ON
    assert fresh.result(MsgType.HELLO) == Result.OK
    assert fresh.pattern == Indicator.OFF


def test_short_key_is_refused(interpreter: str) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        open_firmware(interpreter, b"too-short")


def test_pulse_requires_session(fresh: Mcu) -> None:
    assert fresh.pulse(500, 1) == Result.REJECTED_BAD
    assert fresh.result(MsgType.HEARTBEAT) == Result.REJECTED_BAD
    assert not fresh.relay_open


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
    assert mcu.pulse(500, 1, key=b"attacker-key-000000000000000000!") == Result.REJECTED_AUTH
    payload = bytearray(pack_relay_pulse(KEY, 500, 1))
    payload[0] ^= 0x10  # longer duration than was signed
    assert mcu.result(MsgType.RELAY_PULSE, bytes(payload)) == Result.REJECTED_AUTH
    assert not mcu.relay_open and mcu.pulses == []


def test_stale_counter_rejected(mcu: Mcu) -> None:
    assert mcu.pulse(100, 5) == Result.OK
    assert mcu.pulse(100, 5) == Result.REJECTED_STALE  # replay with a new seq
    assert mcu.pulse(100, 4) == Result.REJECTED_STALE
    assert mcu.pulse(100, 6) == Result.OK
    assert mcu.pulses == [100, 100]


def test_bad_payloads_get_rejected_bad(mcu: Mcu) -> None:
    assert mcu.result(MsgType.INDICATOR, b"\x63") == Result.REJECTED_BAD
    assert mcu.result(MsgType.RELAY_PULSE, b"\x00\x01") == Result.REJECTED_BAD
    assert mcu.pulse(0, 1) == Result.REJECTED_BAD
    assert mcu.result(MsgType.HELLO, b"\x00") == Result.REJECTED_BAD
    assert mcu.pattern == Indicator.OFF and not mcu.relay_open


def test_duplicate_command_reacked_not_reexecuted(mcu: Mcu) -> None:
    payload = pack_relay_pulse(KEY, 300, 1)
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
        (ack,) = mcu.send(MsgType.HEARTBEAT)
        seqs.append(ack.seq)
    assert all((b - a) % 256 == 1 for a, b in itertools.pairwise(seqs))
    assert 0 in seqs[1:] and 255 in seqs


def test_status_and_simple_commands(mcu: Mcu) -> None:
    assert mcu.result(MsgType.INDICATOR, pack_indicator(Indicator.SEE_AGENT)) == Result.OK
    assert mcu.result(MsgType.BUZZER, pack_buzzer(250)) == Result.OK
    assert mcu.pulse(1000, 77) == Result.OK
    ack, status = mcu.send(MsgType.STATUS_REQUEST)
    assert ack.msg_type == MsgType.ACK and status.msg_type == MsgType.STATUS
    assert unpack_status(status.payload) == (True, Indicator.SEE_AGENT, 77, True)
    assert mcu.result(MsgType.RELAY_CLOSE) == Result.OK
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
    assert mcu.result(MsgType.HEARTBEAT) == Result.OK  # fed: still fine
    assert mcu.tick(1000) == [] and mcu.relay_open
    (fault,) = mcu.tick(1)
    assert fault.msg_type == MsgType.FAULT
    assert unpack_u8(fault.payload, "FAULT") == FaultCode.LINK_LOST
    assert not mcu.relay_open
    assert mcu.pattern == Indicator.OUT_OF_SERVICE
    assert mcu.tick(5000) == []  # FAULT only once
    # Session is gone until HELLO; heartbeats tell the host so.
    assert mcu.result(MsgType.HEARTBEAT) == Result.REJECTED_BAD
    assert mcu.pulse(100, 2) == Result.REJECTED_BAD
    assert mcu.result(MsgType.HELLO) == Result.OK
    assert mcu.pulse(100, 2) == Result.OK


def test_reboot_mid_pulse_closes_relay_and_keeps_counter(mcu: Mcu) -> None:
    """The counter is in (simulated) flash: a pulse seen before a reset cannot be
    replayed after it. On MicroPython it goes through the board's CounterStore."""
    assert mcu.pulse(3000, 10) == Result.OK
    assert mcu.relay_open
    (boot,) = mcu.rx.feed(mcu.fw.boot(ResetCause.WATCHDOG))
    assert unpack_boot(boot.payload)[1] == ResetCause.WATCHDOG
    assert not mcu.relay_open and mcu.fw.state.last_counter == 10
    assert not mcu.fw.state.session
    assert mcu.result(MsgType.HELLO) == Result.OK
    assert mcu.pulse(100, 10) == Result.REJECTED_STALE
    assert mcu.pulse(100, 11) == Result.OK
    assert mcu.fw.outputs.relay_history == [True, False, True]


def test_garbage_counted_not_answered(mcu: Mcu) -> None:
    assert mcu.fw.feed(b"\x12\x34\x00\xff\x00") == b""
    assert mcu.fw.state.rx_errors == 2


def test_a_corrupted_command_is_never_executed(mcu: Mcu) -> None:
    wire = bytearray(Frame(MsgType.RELAY_PULSE, 9, pack_relay_pulse(KEY, 300, 1)).encode())
    for i in range(len(wire) - 1):  # every single-bit error in every data byte
        for bit in range(8):
            flipped = bytearray(wire)
            flipped[i] ^= 1 << bit
            assert mcu.fw.feed(b"\x00" + bytes(flipped)) == b""
    assert mcu.pulses == [] and not mcu.relay_open
    assert mcu.result(MsgType.RELAY_PULSE, pack_relay_pulse(KEY, 300, 1), seq=10) == Result.OK


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


@pytest.mark.micropython
@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_frames_split_anywhere_are_reassembled(
    both: dict[str, SimulatedFirmware], data: st.DataObject
) -> None:
    """A UART hands over bytes in arbitrary pieces; the answers do not depend on where."""
    stream = b"".join(
        Frame(t, seq, p).encode()
        for seq, (t, p) in enumerate(
            [
                (MsgType.HELLO, b""),
                (MsgType.INDICATOR, pack_indicator(Indicator.READY)),
                (MsgType.STATUS_REQUEST, b""),
                (MsgType.HEARTBEAT, b""),
            ]
        )
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    for firmware in both.values():
        firmware.boot(ResetCause.POWER_ON)
        out = b"".join(firmware.feed(piece) for piece in pieces)
        frames = FrameDecoder().feed(out)
        assert [f.msg_type for f in frames] == [MsgType.ACK] * 3 + [MsgType.STATUS, MsgType.ACK]
        acks = [unpack_ack(f.payload) for f in frames if f.msg_type == MsgType.ACK]
        assert acks == [(seq, Result.OK) for seq in range(4)]
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
        firmware.boot(ResetCause.POWER_ON)
        firmware.feed(Frame(MsgType.HELLO, 0).encode())
        answers.append(firmware.feed(garbage))
        assert not firmware.state.relay_open
    assert len(set(answers)) == 1

"""Unit and property tests of the gate serial protocol (framing, CRC, COBS, HMAC, payloads).

The firmware's behaviour is in ``test_firmware_conformance.py``, on both interpreters.
"""

import contextlib
import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    HOST_TO_MCU_LABEL,
    MAX_FRAME,
    MAX_PAYLOAD,
    MCU_TO_HOST_LABEL,
    BadCobs,
    BadCrc,
    BadLength,
    BadPayload,
    Frame,
    FrameDecoder,
    HmacKey,
    Indicator,
    LinkKeys,
    MsgType,
    ProtocolError,
    UnknownType,
    UnknownVersion,
    cobs_decode,
    cobs_encode,
    command_tag,
    crc16_ccitt_false,
    decode_wire,
    epoch_tag,
    hmac_sha256,
    pack_indicator,
    pack_new_epoch,
    pack_relay_pulse,
    pack_session_command,
    pack_status,
    relay_tag,
    status_authentic,
    unpack_boot,
    unpack_new_epoch,
    unpack_relay_pulse,
    unpack_session_command,
    unpack_status,
)

KEY = b"unit-test-key-0123456789abcdef!!"


def raw_frame(
    version: int, msg_type: int, seq: int, payload: bytes, plen: int | None = None
) -> bytes:
    """Hand-built frame with a *correct* CRC, to reach checks after the CRC."""
    body = bytes([version, msg_type, seq, len(payload) if plen is None else plen]) + payload
    return body + struct.pack(">H", crc16_ccitt_false(body))


# ------------------------------------------------------------------ CRC / COBS


def test_crc16_ccitt_false_check_value() -> None:
    """The standard check value pins the exact CRC variant (poly, init, no reflect)."""
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_cobs_reference_vectors(raw: bytes, encoded: bytes) -> None:
    """Interoperability with other COBS implementations (Wikipedia vectors)."""
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


@given(st.binary(max_size=1000))
def test_cobs_round_trip(data: bytes) -> None:
    enc = cobs_encode(data)
    assert 0 not in enc
    assert cobs_decode(enc) == data


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x02\x00\x03", b"\x00"])
def test_cobs_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(BadCobs):
        cobs_decode(bad)


# ------------------------------------------------------------------------ HMAC


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_handwritten_hmac_matches_stdlib(key: bytes, msg: bytes) -> None:
    """The MicroPython-friendly HMAC must equal CPython's hmac (keys > block too)."""
    assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


@given(st.binary(max_size=200), st.lists(st.binary(max_size=300), max_size=3))
def test_precomputed_hmac_key_matches_stdlib(key: bytes, msgs: list[bytes]) -> None:
    """One HmacKey, many messages: the pads are reused, the answers stay HMAC's."""
    hk = HmacKey(key)
    for msg in msgs:
        assert hk.digest(msg) == hmac.new(key, msg, hashlib.sha256).digest()
        assert hk.tag(msg) == hk.digest(msg)[:16]


def _spec_tag(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()[:16]


def test_direction_keys_match_spec() -> None:
    """PROTOCOL.md: down = HMAC(key, host->mcu label), up = HMAC(key, mcu->host label)."""
    keys = LinkKeys(KEY)
    down = hmac.new(KEY, b"gate-link/2 host->mcu", hashlib.sha256).digest()
    up = hmac.new(KEY, b"gate-link/2 mcu->host", hashlib.sha256).digest()
    assert HOST_TO_MCU_LABEL == b"gate-link/2 host->mcu"
    assert MCU_TO_HOST_LABEL == b"gate-link/2 mcu->host"
    assert keys.down.digest(b"x") == hmac.new(down, b"x", hashlib.sha256).digest()
    assert keys.up.digest(b"x") == hmac.new(up, b"x", hashlib.sha256).digest()
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LinkKeys(b"short")


def test_tags_match_spec() -> None:
    keys = LinkKeys(KEY)
    down = hmac.new(KEY, HOST_TO_MCU_LABEL, hashlib.sha256).digest()
    up = hmac.new(KEY, MCU_TO_HOST_LABEL, hashlib.sha256).digest()
    pulse = b"relay\x03" + struct.pack(">IHI", 7, 750, 42)
    assert relay_tag(keys, 7, 750, 42) == _spec_tag(down, pulse)
    assert relay_tag(keys, 7, 750, 43) != relay_tag(keys, 7, 750, 42)
    assert relay_tag(keys, 8, 750, 42) != relay_tag(keys, 7, 750, 42)
    assert epoch_tag(keys, 9) == _spec_tag(down, b"epoch\x08" + struct.pack(">I", 9))
    session = bytes(range(8))
    cmd = b"cmd\x05" + session + struct.pack(">I", 3) + b"\x03"
    assert command_tag(keys, MsgType.INDICATOR, session, 3, b"\x03") == _spec_tag(down, cmd)
    body = bytes(range(19))
    nonce = b"N" * 8
    status = b"status\x86\x2a" + body + nonce
    payload = body + _spec_tag(up, status)
    assert status_authentic(keys, 0x2A, payload, nonce)
    # A tag made for the host->MCU direction never passes as the MCU's.
    assert not status_authentic(keys, 0x2A, body + _spec_tag(down, status), nonce)


# ---------------------------------------------------------------------- frames

frames = st.builds(
    Frame,
    st.sampled_from(sorted(MsgType.NAMES)),
    st.integers(0, 255),
    st.binary(max_size=MAX_PAYLOAD),
)


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    raw = frame.to_bytes()
    assert len(raw) <= MAX_FRAME
    assert raw[0] == 2 and raw[3] == len(frame.payload)
    assert Frame.parse(raw) == frame
    assert decode_wire(frame.encode()) == frame


@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_decoder_reassembles_arbitrary_chunking(fs: list[Frame], data: st.DataObject) -> None:
    """Serial reads split the stream anywhere; the decoder must not care."""
    stream = b"".join(f.encode() for f in fs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = FrameDecoder()
    got: list[Frame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += dec.feed(stream[prev:cut])
        prev = cut
    assert got == fs
    assert dec.dropped == 0


def test_parse_errors_are_specific() -> None:
    """Each kind of damage maps to its own ProtocolError subclass and message."""
    good = Frame(MsgType.HEARTBEAT, 7).to_bytes()
    with pytest.raises(BadLength, match="shorter"):
        Frame.parse(good[:5])
    with pytest.raises(BadLength, match="exceeds"):
        Frame.parse(bytes(MAX_FRAME + 1))
    with pytest.raises(BadCrc, match="CRC mismatch"):
        Frame.parse(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(UnknownVersion, match="version 1, expected 2"):
        Frame.parse(raw_frame(1, MsgType.HEARTBEAT, 7, b""))  # a version 1 peer
    with pytest.raises(BadLength, match="payload_len says 3"):
        Frame.parse(raw_frame(2, MsgType.HEARTBEAT, 7, b"\x01", plen=3))
    with pytest.raises(UnknownType, match="0x55"):
        Frame.parse(raw_frame(2, 0x55, 7, b""))
    with pytest.raises(BadLength):
        Frame(MsgType.HELLO, 0, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        Frame(MsgType.HELLO, 256)


@given(frames, st.data())
def test_any_single_bit_flip_is_detected(frame: Frame, data: st.DataObject) -> None:
    raw = bytearray(frame.to_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        Frame.parse(bytes(raw))


@given(frames, st.data())
def test_bit_flip_on_the_wire_never_yields_the_frame(frame: Frame, data: st.DataObject) -> None:
    """A damaged wire frame is dropped and counted, never delivered as if intact."""
    wire = bytearray(frame.encode())
    pos = data.draw(st.integers(0, len(wire) - 2))  # not the delimiter
    wire[pos] ^= 1 << data.draw(st.integers(0, 7))
    dec = FrameDecoder()
    got = dec.feed(bytes(wire))
    assert frame not in got
    # CRC-16 may in theory accept a multi-byte COBS mangling; otherwise it's counted.
    assert dec.dropped >= 1 or got


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_garbage_only_yields_frames_that_were_really_sent(garbage: bytes) -> None:
    """Garbage never raises; every yielded frame is a CRC-valid segment of the input,
    and every other complete segment is counted as dropped."""
    dec = FrameDecoder()
    got = dec.feed(garbage)
    segments = [s for s in garbage.split(b"\x00")[:-1] if s]  # complete, non-empty
    valid = set()
    for seg in segments:
        with contextlib.suppress(ProtocolError):
            valid.add(Frame.parse(cobs_decode(seg)).to_bytes())
    for f in got:
        assert f.to_bytes() in valid
    assert len(got) + dec.dropped == len(segments)


@given(st.binary(max_size=500), frames)
def test_decoder_resynchronises_after_garbage(garbage: bytes, frame: Frame) -> None:
    dec = FrameDecoder()
    got = dec.feed(garbage + b"\x00" + frame.encode())
    assert got and got[-1] == frame


@given(st.lists(frames, min_size=1, max_size=10))
def test_concatenated_frames_yield_exactly_those_frames(fs: list[Frame]) -> None:
    """k valid frames back to back in one read -> exactly those k, in order."""
    dec = FrameDecoder()
    assert dec.feed(b"".join(f.encode() for f in fs)) == fs
    assert dec.frames == len(fs)
    assert dec.dropped == 0


@given(frames, frames, st.data())
def test_truncated_frame_is_dropped_and_next_frame_survives(
    a: Frame, b: Frame, data: st.DataObject
) -> None:
    """A frame cut short (>= 1 content byte and its delimiter lost) then a flush
    0x00: the truncated frame never comes out, the next one does, unharmed."""
    wire = a.encode()
    cut = data.draw(st.integers(0, len(wire) - 2), label="cut")
    stream = wire[:cut] + b"\x00" + b.encode()
    split = data.draw(st.integers(0, len(stream)), label="split")
    dec = FrameDecoder()
    got = dec.feed(stream[:split]) + dec.feed(stream[split:])
    assert got == [b]
    assert dec.dropped == (1 if cut else 0)  # an empty remnant is just a flush


@given(frames, frames, frames, st.data())
def test_truncated_frame_without_delimiter_costs_at_most_the_next_frame(
    a: Frame, b: Frame, c: Frame, data: st.DataObject
) -> None:
    """With no flush the remnant runs into the next frame (both are lost unless the
    remnant is empty); the decoder resynchronises at that frame's delimiter."""
    wire = a.encode()
    cut = data.draw(st.integers(0, len(wire) - 2), label="cut")
    dec = FrameDecoder()
    got = dec.feed(wire[:cut] + b.encode() + c.encode())
    assert got[-1] == c
    if cut == 0:
        assert got == [b, c]
    else:
        assert all(f in (b, c) for f in got)
        if a not in (b, c):
            assert a not in got


def test_oversize_frame_is_dropped_and_counted() -> None:
    dec = FrameDecoder()
    good = Frame(MsgType.HELLO, 1, bytes(8)).encode()
    assert dec.feed(b"\x07" * 300) == []
    assert dec.feed(b"\x07" * 300 + b"\x00" + good) == [Frame(MsgType.HELLO, 1, bytes(8))]
    assert dec.dropped == 1


def test_payload_helpers_validate() -> None:
    with pytest.raises(BadPayload):
        unpack_relay_pulse(b"\x00" * 5)
    with pytest.raises(BadPayload):
        unpack_boot(b"\x05ab\x01")
    with pytest.raises(ValueError):
        pack_indicator(99)
    assert unpack_boot(b"\x02ab\x01") == ("ab", 1)
    keys = LinkKeys(KEY)
    d, c, t = unpack_relay_pulse(pack_relay_pulse(keys, 4, 300, 9))
    assert (d, c, t) == (300, 9, relay_tag(keys, 4, 300, 9))
    assert unpack_new_epoch(pack_new_epoch(keys, 5)) == (5, epoch_tag(keys, 5))
    with pytest.raises(BadPayload):
        unpack_new_epoch(bytes(19))
    session = bytes(8)
    payload = pack_session_command(keys, MsgType.BUZZER, session, 6, b"\x00\x50")
    assert unpack_session_command(payload, 2, "BUZZER") == (
        b"\x00\x50",
        6,
        command_tag(keys, MsgType.BUZZER, session, 6, b"\x00\x50"),
    )
    with pytest.raises(BadPayload, match="BUZZER payload must be 22 bytes"):
        unpack_session_command(payload[:-1], 2, "BUZZER")
    status = pack_status(keys, 3, b"n" * 8, True, Indicator.READY, False, 1, 2, b"s" * 8)
    assert unpack_status(status)[:6] == (True, Indicator.READY, False, 1, 2, b"s" * 8)
    assert status_authentic(keys, 3, status, b"n" * 8)
    assert not status_authentic(keys, 3, status[:-1], b"n" * 8)
    with pytest.raises(BadPayload):
        unpack_status(status[:-1])


def test_indicator_constants_are_distinct() -> None:
    names = ["READY", "CAPTURING", "GRANTED", "SEE_AGENT", "OUT_OF_SERVICE", "OPT_OUT_ACK", "OFF"]
    values = [getattr(Indicator, n) for n in names]
    assert len(set(values)) == len(names)
    assert sorted(values) == sorted(Indicator.ALL)

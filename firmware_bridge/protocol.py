"""Wire protocol between the gate host (Raspberry Pi) and the gate MCU.

This module is shared by the host driver and the reference firmware, so it must
also import on MicroPython: plain classes, bytes/bytearray and ``struct`` only;
no dataclasses, enums or runtime typing.  See ``PROTOCOL.md`` for the spec.

Frame (before COBS)::

    version u8 (=2) | msg_type u8 | seq u8 | payload_len u8 | payload | crc16 u16 BE

The CRC is CRC-16/CCITT-FALSE over every byte before it.  On the wire each frame
is COBS-encoded and terminated by a single 0x00 byte.

The CRC only finds line noise. What an attacker on the line must not forge is
authenticated with HMAC-SHA256 under two keys derived from the gate's relay key, one
per direction (:class:`LinkKeys`): every host command that changes something (the
relay pulse and new counter epoch, and the session commands: heartbeat, relay close,
indicator, buzzer) and the MCU's STATUS, which answers the host's fresh nonce.
"""

# MicroPython compatibility: %-formatting, plain dict class attributes and
# zip() without strict= are deliberate.
# ruff: noqa: UP031, RUF012, B905

import struct

try:  # CPython and recent MicroPython
    import hashlib
except ImportError:  # pragma: no cover - old MicroPython ports
    import uhashlib as hashlib  # type: ignore[no-redef]

VERSION = 2
MAX_FRAME = 128  # max decoded frame size: header + payload + crc
HEADER_LEN = 4
CRC_LEN = 2
MAX_PAYLOAD = MAX_FRAME - HEADER_LEN - CRC_LEN  # 122
# COBS adds one code byte per started 254-byte block.
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1
TAG_LEN = 16
MIN_KEY_LEN = 16
NONCE_LEN = 8  # the host's challenge in HELLO and STATUS_REQUEST
SESSION_LEN = 8  # the MCU's random session id, chosen at HELLO
U32_MAX = 0xFFFFFFFF
# Both halves of the relay state at U32_MAX: the MCU's counter store is unreadable.
# Every pulse is then stale and no new epoch is above it: only a deploy recovers.
EPOCH_LOCKED = U32_MAX


# --------------------------------------------------------------------------- errors


class BridgeError(Exception):
    """Root of the serial bridge's exceptions (see the package docstring)."""


class ProtocolError(BridgeError):
    """Base class of every framing / parsing error."""


class BadCobs(ProtocolError):
    """The byte stuffing is inconsistent (truncated block or stray zero)."""


class FrameTooLong(ProtocolError):
    """More bytes than MAX_FRAME arrived before a delimiter."""


class BadLength(ProtocolError):
    """Frame shorter than a header+CRC, or payload_len disagrees with the frame."""


class BadCrc(ProtocolError):
    """CRC-16 mismatch: the frame was corrupted on the line."""


class UnknownVersion(ProtocolError):
    """Protocol version byte is not ours."""


class UnknownType(ProtocolError):
    """Message type byte is not defined."""


class BadPayload(ProtocolError):
    """Well-formed frame whose payload does not fit its message type."""


# ------------------------------------------------------------------------ constants


class MsgType:
    """Message type bytes. 0x0X: host->MCU commands, 0x8X: MCU->host."""

    HELLO = 0x01
    HEARTBEAT = 0x02
    RELAY_PULSE = 0x03
    RELAY_CLOSE = 0x04
    INDICATOR = 0x05
    BUZZER = 0x06
    STATUS_REQUEST = 0x07
    NEW_EPOCH = 0x08

    ACK = 0x81
    BOOT = 0x82
    OPT_OUT_PRESSED = 0x83
    DOOR = 0x84
    FAULT = 0x85
    STATUS = 0x86

    HOST_TO_MCU = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08)
    MCU_TO_HOST = (0x81, 0x82, 0x83, 0x84, 0x85, 0x86)
    # Commands authenticated under the session (payload: body, n u32, tag):
    # HEARTBEAT, RELAY_CLOSE, INDICATOR, BUZZER.
    SESSION_COMMANDS = (0x02, 0x04, 0x05, 0x06)

    NAMES = {
        0x01: "HELLO",
        0x02: "HEARTBEAT",
        0x03: "RELAY_PULSE",
        0x04: "RELAY_CLOSE",
        0x05: "INDICATOR",
        0x06: "BUZZER",
        0x07: "STATUS_REQUEST",
        0x08: "NEW_EPOCH",
        0x81: "ACK",
        0x82: "BOOT",
        0x83: "OPT_OUT_PRESSED",
        0x84: "DOOR",
        0x85: "FAULT",
        0x86: "STATUS",
    }

    @staticmethod
    def name(value: int) -> str:
        return MsgType.NAMES.get(value, "0x%02x" % value)


class Indicator:
    """Indicator light patterns (INDICATOR payload, STATUS.indicator)."""

    OFF = 0
    READY = 1
    CAPTURING = 2
    GRANTED = 3
    SEE_AGENT = 4
    OUT_OF_SERVICE = 5
    OPT_OUT_ACK = 6

    ALL = (0, 1, 2, 3, 4, 5, 6)
    NAMES = {
        0: "OFF",
        1: "READY",
        2: "CAPTURING",
        3: "GRANTED",
        4: "SEE_AGENT",
        5: "OUT_OF_SERVICE",
        6: "OPT_OUT_ACK",
    }

    @staticmethod
    def name(value: int) -> str:
        return Indicator.NAMES.get(value, "0x%02x" % value)


class Result:
    """ACK result codes."""

    OK = 0
    REJECTED_AUTH = 1
    REJECTED_STALE = 2
    REJECTED_BAD = 3

    NAMES = {0: "OK", 1: "REJECTED_AUTH", 2: "REJECTED_STALE", 3: "REJECTED_BAD"}

    @staticmethod
    def name(value: int) -> str:
        return Result.NAMES.get(value, "0x%02x" % value)


class FaultCode:
    """FAULT payload codes."""

    LINK_LOST = 1

    NAMES = {1: "LINK_LOST"}

    @staticmethod
    def name(value: int) -> str:
        return FaultCode.NAMES.get(value, "0x%02x" % value)


class ResetCause:
    """BOOT reset cause codes."""

    POWER_ON = 0
    SOFT = 1
    WATCHDOG = 2
    BROWNOUT = 3


# ----------------------------------------------------------------------------- COBS


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``; the result contains no 0x00 byte."""
    out = bytearray(b"\x00")
    code_idx = 0
    code = 1
    last = len(data) - 1
    for i, b in enumerate(data):
        if b == 0:
            out[code_idx] = code
            code_idx = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF and i != last:  # full block; no empty block at the end
                out[code_idx] = code
                code_idx = len(out)
                out.append(0)
                code = 1
    out[code_idx] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode` (without the 0x00 delimiter); raises BadCobs."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise BadCobs("zero byte inside a COBS frame at offset %d" % i)
        i += 1
        end = i + code - 1
        if end > n:
            raise BadCobs("COBS block at offset %d overruns the frame" % (i - 1))
        block = data[i:end]
        if 0 in block:
            raise BadCobs("zero byte inside a COBS block")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ------------------------------------------------------------------------------ CRC


def _make_crc_table() -> list:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


# ---------------------------------------------------------------------------- HMAC


class HmacKey:
    """An HMAC-SHA256 key (RFC 2104) with its two padded blocks computed once.

    Built on bare ``hashlib.sha256`` because MicroPython's ``hmac`` is not on every
    port. Precomputing the pads matters there: the per-byte XOR loops cost about
    twenty times the hashing, so a tag costs two C-level sha256 calls per frame.
    """

    def __init__(self, key: bytes) -> None:
        block = 64
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + b"\x00" * (block - len(key))
        self._inner = bytes([b ^ 0x36 for b in key])
        self._outer = bytes([b ^ 0x5C for b in key])

    def digest(self, msg: bytes) -> bytes:
        inner = hashlib.sha256(self._inner + bytes(msg)).digest()
        return hashlib.sha256(self._outer + inner).digest()

    def tag(self, msg: bytes) -> bytes:
        """The first TAG_LEN bytes of the HMAC: what frames carry."""
        return self.digest(msg)[:TAG_LEN]


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """RFC 2104 HMAC-SHA256 of ``msg`` under ``key`` (one-off; see :class:`HmacKey`)."""
    return HmacKey(key).digest(msg)


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison so tag checks leak no timing information."""
    if len(a) != len(b):
        return False
    acc = 0
    for x, y in zip(a, b):
        acc |= x ^ y
    return acc == 0


HOST_TO_MCU_LABEL = b"gate-link/2 host->mcu"
MCU_TO_HOST_LABEL = b"gate-link/2 mcu->host"


class LinkKeys:
    """The two directions' keys, derived from the gate's relay key.

    ``down = HMAC(relay_key, HOST_TO_MCU_LABEL)`` tags host commands and ``up =
    HMAC(relay_key, MCU_TO_HOST_LABEL)`` tags the MCU's STATUS, so no tag made in one
    direction is ever valid in the other.
    """

    def __init__(self, relay_key: bytes) -> None:
        if len(relay_key) < MIN_KEY_LEN:
            raise ValueError("HMAC key must be at least %d bytes" % MIN_KEY_LEN)
        root = HmacKey(relay_key)
        self.down = HmacKey(root.digest(HOST_TO_MCU_LABEL))
        self.up = HmacKey(root.digest(MCU_TO_HOST_LABEL))


def relay_tag(keys: LinkKeys, epoch: int, duration_ms: int, counter: int) -> bytes:
    """Tag of a RELAY_PULSE: ``down`` over b"relay", type, epoch, duration, counter."""
    msg = b"relay" + bytes([MsgType.RELAY_PULSE]) + struct.pack(">IHI", epoch, duration_ms, counter)
    return keys.down.tag(msg)


def epoch_tag(keys: LinkKeys, new_epoch: int) -> bytes:
    """Tag of a NEW_EPOCH: ``down`` over b"epoch", type, the new epoch."""
    return keys.down.tag(b"epoch" + bytes([MsgType.NEW_EPOCH]) + struct.pack(">I", new_epoch))


def command_tag(keys: LinkKeys, msg_type: int, session: bytes, n: int, body: bytes) -> bytes:
    """Tag of a session command: ``down`` over b"cmd", type, session id, n, body."""
    msg = b"cmd" + bytes([msg_type]) + bytes(session) + struct.pack(">I", n) + bytes(body)
    return keys.down.tag(msg)


def status_tag(keys: LinkKeys, seq: int, body: bytes, nonce: bytes) -> bytes:
    """Tag of a STATUS: ``up`` over b"status", type, the frame's seq, body, the host's nonce."""
    return keys.up.tag(b"status" + bytes([MsgType.STATUS, seq]) + bytes(body) + bytes(nonce))


# --------------------------------------------------------------------------- frames


class Frame:
    """One protocol message: type, sequence number and raw payload."""

    def __init__(self, msg_type: int, seq: int, payload: bytes = b"") -> None:
        if not 0 <= msg_type <= 0xFF:
            raise ValueError("msg_type out of range: %r" % msg_type)
        if not 0 <= seq <= 0xFF:
            raise ValueError("seq out of range 0-255: %r" % seq)
        if len(payload) > MAX_PAYLOAD:
            raise BadLength("payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
        self.msg_type = msg_type
        self.seq = seq
        self.payload = bytes(payload)

    def to_bytes(self) -> bytes:
        """The frame before COBS, CRC appended."""
        body = bytes([VERSION, self.msg_type, self.seq, len(self.payload)]) + self.payload
        return body + struct.pack(">H", crc16_ccitt_false(body))

    def encode(self) -> bytes:
        """The frame as sent on the wire: COBS + 0x00 delimiter."""
        return cobs_encode(self.to_bytes()) + b"\x00"

    @classmethod
    def parse(cls, raw: bytes) -> "Frame":
        """Parse a decoded (un-COBSed) frame, raising a ProtocolError subclass."""
        n = len(raw)
        if n < HEADER_LEN + CRC_LEN:
            raise BadLength("frame of %d bytes is shorter than the minimum 6" % n)
        if n > MAX_FRAME:
            raise BadLength("frame of %d bytes exceeds the maximum %d" % (n, MAX_FRAME))
        want = struct.unpack(">H", raw[n - CRC_LEN :])[0]
        got = crc16_ccitt_false(raw[: n - CRC_LEN])
        if want != got:
            raise BadCrc("CRC mismatch: frame says 0x%04x, computed 0x%04x" % (want, got))
        if raw[0] != VERSION:
            raise UnknownVersion("protocol version %d, expected %d" % (raw[0], VERSION))
        plen = raw[3]
        if plen != n - HEADER_LEN - CRC_LEN:
            raise BadLength(
                "payload_len says %d but frame carries %d" % (plen, n - HEADER_LEN - CRC_LEN)
            )
        if raw[1] not in MsgType.NAMES:
            raise UnknownType("unknown message type 0x%02x" % raw[1])
        return cls(raw[1], raw[2], raw[HEADER_LEN : n - CRC_LEN])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Frame)
            and self.msg_type == other.msg_type
            and self.seq == other.seq
            and self.payload == other.payload
        )

    def __hash__(self) -> int:
        return hash((self.msg_type, self.seq, self.payload))

    def __repr__(self) -> str:
        return "Frame(%s, seq=%d, payload=%s)" % (
            MsgType.name(self.msg_type),
            self.seq,
            self.payload.hex(),
        )


def decode_wire(data: bytes) -> "Frame":
    """Decode a single wire frame (COBS, optional trailing 0x00)."""
    if data and data[-1] == 0:
        data = data[:-1]
    return Frame.parse(cobs_decode(data))


class FrameDecoder:
    """Incremental stream decoder: feed arbitrary chunks, get complete valid frames.

    Garbage, corrupt and oversize frames are dropped and counted in ``dropped``
    (``last_error`` keeps the reason); the next 0x00 resynchronises the stream.
    Empty frames (consecutive delimiters) are ignored silently: senders may emit
    a lone 0x00 to flush a half-received frame at the peer.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.frames = 0
        self.dropped = 0
        self.last_error: ProtocolError | None = None

    def reset(self) -> None:
        """Forget any partially received frame (counters are kept)."""
        self._buf = bytearray()
        self._overflow = False

    def _drop(self, err: ProtocolError) -> None:
        self.dropped += 1
        self.last_error = err

    def feed(self, data: bytes) -> list:
        """Consume ``data``; return the list of Frames completed by it."""
        data = bytes(data)
        out = []
        start = 0
        n = len(data)
        while start <= n:
            idx = data.find(b"\x00", start)
            end = n if idx < 0 else idx
            if not self._overflow and end > start:
                if len(self._buf) + (end - start) > MAX_ENCODED:
                    self._overflow = True
                    self._buf = bytearray()
                else:
                    self._buf += data[start:end]
            if idx < 0:
                break
            if self._overflow:
                self._drop(FrameTooLong("frame longer than %d bytes" % MAX_FRAME))
            elif self._buf:
                try:
                    out.append(Frame.parse(cobs_decode(bytes(self._buf))))
                    self.frames += 1
                except ProtocolError as e:
                    self._drop(e)
            self._buf = bytearray()
            self._overflow = False
            start = idx + 1
        return out


# ------------------------------------------------------------------------- payloads


def _expect_len(payload: bytes, n: int, what: str) -> None:
    if len(payload) != n:
        raise BadPayload("%s payload must be %d bytes, got %d" % (what, n, len(payload)))


def expect_empty(payload: bytes, what: str) -> None:
    _expect_len(payload, 0, what)


def unpack_nonce(payload: bytes, what: str) -> bytes:
    """HELLO and STATUS_REQUEST carry the host's nonce and nothing else."""
    _expect_len(payload, NONCE_LEN, what)
    return bytes(payload)


def pack_session_command(
    keys: LinkKeys, msg_type: int, session: bytes, n: int, body: bytes = b""
) -> bytes:
    """body | n u32 | tag: a command the MCU executes only in session ``session``, once."""
    return bytes(body) + struct.pack(">I", n) + command_tag(keys, msg_type, session, n, body)


def unpack_session_command(payload: bytes, body_len: int, what: str) -> tuple:
    """-> (body, n, tag)."""
    _expect_len(payload, body_len + 4 + TAG_LEN, what)
    n = struct.unpack(">I", payload[body_len : body_len + 4])[0]
    return bytes(payload[:body_len]), n, bytes(payload[body_len + 4 :])


def pack_relay_pulse(keys: LinkKeys, epoch: int, duration_ms: int, counter: int) -> bytes:
    tag = relay_tag(keys, epoch, duration_ms, counter)
    return struct.pack(">HI", duration_ms, counter) + tag


def unpack_relay_pulse(payload: bytes) -> tuple:
    """-> (duration_ms, counter, tag)."""
    _expect_len(payload, 6 + TAG_LEN, "RELAY_PULSE")
    duration, counter = struct.unpack(">HI", payload[:6])
    return duration, counter, bytes(payload[6:])


def pack_new_epoch(keys: LinkKeys, new_epoch: int) -> bytes:
    return struct.pack(">I", new_epoch) + epoch_tag(keys, new_epoch)


def unpack_new_epoch(payload: bytes) -> tuple:
    """-> (new_epoch, tag)."""
    _expect_len(payload, 4 + TAG_LEN, "NEW_EPOCH")
    return struct.unpack(">I", payload[:4])[0], bytes(payload[4:])


def pack_indicator(pattern: int) -> bytes:
    """The body of an INDICATOR session command."""
    if pattern not in Indicator.ALL:
        raise ValueError("unknown indicator pattern %r" % pattern)
    return bytes([pattern])


def unpack_indicator(body: bytes) -> int:
    _expect_len(body, 1, "INDICATOR")
    if body[0] not in Indicator.ALL:
        raise BadPayload("unknown indicator pattern %d" % body[0])
    return body[0]


def pack_buzzer(ms: int) -> bytes:
    """The body of a BUZZER session command."""
    return struct.pack(">H", ms)


def unpack_buzzer(body: bytes) -> int:
    _expect_len(body, 2, "BUZZER")
    return struct.unpack(">H", body)[0]


def pack_ack(acked_seq: int, result: int) -> bytes:
    return bytes([acked_seq, result])


def unpack_ack(payload: bytes) -> tuple:
    """-> (acked_seq, result)."""
    _expect_len(payload, 2, "ACK")
    return payload[0], payload[1]


def pack_boot(fw_version: str, reset_cause: int) -> bytes:
    ver = fw_version.encode()[:32]
    return bytes([len(ver)]) + ver + bytes([reset_cause])


def unpack_boot(payload: bytes) -> tuple:
    """-> (fw_version, reset_cause)."""
    if len(payload) < 2 or payload[0] != len(payload) - 2:
        raise BadPayload("BOOT payload malformed (%d bytes)" % len(payload))
    try:
        ver = bytes(payload[1:-1]).decode()
    except UnicodeError:
        raise BadPayload("BOOT firmware version is not UTF-8") from None
    return ver, payload[-1]


def pack_u8(value: int) -> bytes:
    return bytes([value & 0xFF])


def unpack_u8(payload: bytes, what: str) -> int:
    _expect_len(payload, 1, what)
    return payload[0]


STATUS_BODY_LEN = 3 + 4 + 4 + SESSION_LEN  # 19; the tag follows


def pack_status(
    keys: LinkKeys,
    seq: int,
    nonce: bytes,
    relay_open: bool,
    indicator: int,
    heartbeat_ok: bool,
    epoch: int,
    last_counter: int,
    session: bytes,
) -> bytes:
    """STATUS body and its tag, for the frame ``seq`` answering the host's ``nonce``."""
    body = struct.pack(
        ">BBBII", 1 if relay_open else 0, indicator, 1 if heartbeat_ok else 0, epoch, last_counter
    )
    body += bytes(session)
    return body + status_tag(keys, seq, body, nonce)


def unpack_status(payload: bytes) -> tuple:
    """-> (relay_open, indicator, heartbeat_ok, epoch, last_counter, session, tag).

    Parsing only: :func:`status_authentic` says whether the MCU sent it for this nonce.
    """
    _expect_len(payload, STATUS_BODY_LEN + TAG_LEN, "STATUS")
    relay, ind, hb, epoch, counter = struct.unpack(">BBBII", payload[:11])
    session = bytes(payload[11:STATUS_BODY_LEN])
    return bool(relay), ind, bool(hb), epoch, counter, session, bytes(payload[STATUS_BODY_LEN:])


def status_authentic(keys: LinkKeys, seq: int, payload: bytes, nonce: bytes) -> bool:
    """True if ``payload`` (a STATUS of frame ``seq``) was made by the MCU for ``nonce``."""
    if len(payload) != STATUS_BODY_LEN + TAG_LEN:
        return False
    body = bytes(payload[:STATUS_BODY_LEN])
    return ct_equal(bytes(payload[STATUS_BODY_LEN:]), status_tag(keys, seq, body, nonce))


__all__ = [
    "CRC_LEN",
    "EPOCH_LOCKED",
    "HEADER_LEN",
    "HOST_TO_MCU_LABEL",
    "MAX_ENCODED",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "MCU_TO_HOST_LABEL",
    "MIN_KEY_LEN",
    "NONCE_LEN",
    "SESSION_LEN",
    "STATUS_BODY_LEN",
    "TAG_LEN",
    "U32_MAX",
    "VERSION",
    "BadCobs",
    "BadCrc",
    "BadLength",
    "BadPayload",
    "BridgeError",
    "FaultCode",
    "Frame",
    "FrameDecoder",
    "FrameTooLong",
    "HmacKey",
    "Indicator",
    "LinkKeys",
    "MsgType",
    "ProtocolError",
    "ResetCause",
    "Result",
    "UnknownType",
    "UnknownVersion",
    "cobs_decode",
    "cobs_encode",
    "command_tag",
    "crc16_ccitt_false",
    "ct_equal",
    "decode_wire",
    "epoch_tag",
    "expect_empty",
    "hmac_sha256",
    "pack_ack",
    "pack_boot",
    "pack_buzzer",
    "pack_indicator",
    "pack_new_epoch",
    "pack_relay_pulse",
    "pack_session_command",
    "pack_status",
    "pack_u8",
    "relay_tag",
    "status_authentic",
    "status_tag",
    "unpack_ack",
    "unpack_boot",
    "unpack_buzzer",
    "unpack_indicator",
    "unpack_new_epoch",
    "unpack_nonce",
    "unpack_relay_pulse",
    "unpack_session_command",
    "unpack_status",
    "unpack_u8",
]

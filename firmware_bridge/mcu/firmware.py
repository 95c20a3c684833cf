"""Reference firmware core for the gate MCU.

Hardware-independent logic, written to run unchanged on CPython (simulator,
tests) and MicroPython (Raspberry Pi Pico).  The board code owns the UART and
calls :meth:`FirmwareCore.feed` with received bytes, :meth:`FirmwareCore.tick`
every ~10 ms, and writes whatever bytes those return.

``hal`` must provide ``relay(open)``, ``indicator(pattern)``, ``buzzer(ms)`` and
``now_ms()`` (monotonic, non-wrapping milliseconds).  Optional hooks:
``load_counter() -> int`` / ``store_counter(n)`` persist the last accepted relay
counter across reboots (otherwise a reboot re-opens the replay window), and
``on_pulse(duration_ms)`` is told about each accepted pulse.

Fail secure: the relay is closed at boot, at the end of every pulse, on
RELAY_CLOSE and whenever the host link is lost; it is only opened by an
authenticated, fresh RELAY_PULSE inside an established session.
"""

from firmware_bridge.protocol import (
    BadPayload,
    FaultCode,
    Frame,
    FrameDecoder,
    Indicator,
    MsgType,
    ResetCause,
    Result,
    ct_equal,
    expect_empty,
    pack_ack,
    pack_boot,
    pack_status,
    pack_u8,
    relay_tag,
    unpack_buzzer,
    unpack_indicator,
    unpack_relay_pulse,
)

FW_VERSION = "gatefw-ref 1.0"

# MicroPython has no ``typing``: the HAL's shape exists for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Hal(Protocol):
        def relay(self, open_: bool) -> None: ...
        def indicator(self, pattern: int) -> None: ...
        def buzzer(self, ms: int) -> None: ...
        def now_ms(self) -> int: ...


class FirmwareCore:
    """Protocol state machine of the MCU: parses host commands, drives the HAL."""

    def __init__(
        self,
        hal: "Hal",
        hmac_key: bytes,
        heartbeat_timeout_ms: int = 1000,
        max_pulse_ms: int = 5000,
    ) -> None:
        if len(hmac_key) < 16:
            raise ValueError("HMAC key must be at least 16 bytes")
        self.hal = hal
        self._key = bytes(hmac_key)
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.max_pulse_ms = max_pulse_ms
        self.decoder = FrameDecoder()
        self._tx_seq = 0
        self.duplicates = 0
        self.last_counter = 0
        self._reset_state()

    # ----------------------------------------------------------------- state

    def _reset_state(self) -> None:
        self.relay_open = False
        self.indicator = Indicator.OUT_OF_SERVICE
        self.session = False  # True between HELLO and link loss / reboot
        self.link_ok = False
        self.door_open = False
        self._pulse_end: int | None = None
        self._last_rx: int | None = None
        self._last_cmd: tuple | None = None  # (type, seq, payload) of the last command
        self._last_reply = b""
        self.decoder.reset()

    def _hook(self, name: str, *args: object) -> object:
        fn = getattr(self.hal, name, None)
        return fn(*args) if fn is not None else None

    def _set_relay(self, open_: bool) -> None:
        self.relay_open = open_
        if not open_:
            self._pulse_end = None
        self.hal.relay(open_)

    def _set_indicator(self, pattern: int) -> None:
        self.indicator = pattern
        self.hal.indicator(pattern)

    def _emit(self, msg_type: int, payload: bytes = b"") -> bytes:
        seq = self._tx_seq
        self._tx_seq = (self._tx_seq + 1) & 0xFF
        return Frame(msg_type, seq, payload).encode()

    # ------------------------------------------------------------ public API

    def boot(self, reset_cause: int = ResetCause.POWER_ON) -> bytes:
        """Power-up / reset: relay closed, OUT_OF_SERVICE, announce BOOT."""
        self._reset_state()
        stored = self._hook("load_counter")
        self.last_counter = stored if isinstance(stored, int) else 0
        self._set_relay(False)
        self._set_indicator(Indicator.OUT_OF_SERVICE)
        return self._emit(MsgType.BOOT, pack_boot(FW_VERSION, reset_cause))

    def feed(self, data: bytes) -> bytes:
        """Process received UART bytes; return the bytes to transmit."""
        out = bytearray()
        for frame in self.decoder.feed(data):
            out += self._handle(frame)
        return bytes(out)

    def tick(self) -> bytes:
        """Periodic housekeeping: end pulses, detect link loss (fail secure)."""
        now = self.hal.now_ms()
        if self.relay_open and self._pulse_end is not None and now >= self._pulse_end:
            self._set_relay(False)
        if (
            self.session
            and self._last_rx is not None
            and now - self._last_rx > self.heartbeat_timeout_ms
        ):
            self.session = False
            self.link_ok = False
            self._set_relay(False)
            self._set_indicator(Indicator.OUT_OF_SERVICE)
            return self._emit(MsgType.FAULT, pack_u8(FaultCode.LINK_LOST))
        return b""

    def press_opt_out(self) -> bytes:
        """The passenger pressed the opt-out button."""
        return self._emit(MsgType.OPT_OUT_PRESSED)

    def set_door(self, open_: bool) -> bytes:
        """Door/barrier position sensor changed."""
        self.door_open = bool(open_)
        return self._emit(MsgType.DOOR, pack_u8(1 if open_ else 0))

    def status_payload(self) -> bytes:
        return pack_status(self.relay_open, self.indicator, self.last_counter, self.link_ok)

    # ------------------------------------------------------------- commands

    def _handle(self, frame: Frame) -> bytes:
        if frame.msg_type not in MsgType.HOST_TO_MCU:
            return b""  # MCU->host types are never commands; ignore
        self._last_rx = self.hal.now_ms()
        if self.session:
            self.link_ok = True
        key = (frame.msg_type, frame.seq, frame.payload)
        if key == self._last_cmd and frame.msg_type != MsgType.HELLO:
            # Retransmission of the command just executed: its ACK was lost.
            self.duplicates += 1
            return self._last_reply
        reply = self._execute(frame)
        self._last_cmd = key
        self._last_reply = reply
        return reply

    def _execute(self, frame: Frame) -> bytes:
        t = frame.msg_type
        p = frame.payload
        send_status = False
        try:
            if t == MsgType.HELLO:
                expect_empty(p, "HELLO")
                self.session = True
                self.link_ok = True
                if self.indicator == Indicator.OUT_OF_SERVICE:
                    self._set_indicator(Indicator.OFF)
                result = Result.OK
            elif t == MsgType.RELAY_CLOSE:  # closing is always allowed
                expect_empty(p, "RELAY_CLOSE")
                self._set_relay(False)
                result = Result.OK
            elif t == MsgType.INDICATOR:
                self._set_indicator(unpack_indicator(p))
                result = Result.OK
            elif t == MsgType.BUZZER:
                self.hal.buzzer(unpack_buzzer(p))
                result = Result.OK
            elif t == MsgType.STATUS_REQUEST:
                expect_empty(p, "STATUS_REQUEST")
                result = Result.OK
                send_status = True
            elif not self.session:
                # HEARTBEAT / RELAY_PULSE need a session: tells the host to HELLO.
                result = Result.REJECTED_BAD
            elif t == MsgType.HEARTBEAT:
                expect_empty(p, "HEARTBEAT")
                result = Result.OK
            else:  # RELAY_PULSE
                result = self._relay_pulse(p)
        except BadPayload:
            result = Result.REJECTED_BAD
            send_status = False
        out = self._emit(MsgType.ACK, pack_ack(frame.seq, result))
        if send_status:
            out += self._emit(MsgType.STATUS, self.status_payload())
        return out

    def _relay_pulse(self, payload: bytes) -> int:
        duration, counter, tag = unpack_relay_pulse(payload)
        if duration == 0:
            return Result.REJECTED_BAD
        if not ct_equal(tag, relay_tag(self._key, duration, counter)):
            return Result.REJECTED_AUTH
        if counter <= self.last_counter:
            return Result.REJECTED_STALE
        self.last_counter = counter
        self._hook("store_counter", counter)
        duration = min(duration, self.max_pulse_ms)
        self._set_relay(True)
        self._pulse_end = self.hal.now_ms() + duration
        self._hook("on_pulse", duration)
        return Result.OK

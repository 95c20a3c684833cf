"""Reference firmware core for the gate MCU.

Hardware-independent logic, written to run unchanged on CPython (simulator,
tests) and MicroPython (Raspberry Pi Pico).  The board code owns the UART and
calls :meth:`FirmwareCore.feed` with received bytes, :meth:`FirmwareCore.tick`
every ~10 ms, and writes whatever bytes those return.

``hal`` must provide ``relay(open)``, ``indicator(pattern)``, ``buzzer(ms)``,
``now_ms()`` (monotonic, non-wrapping milliseconds) and ``random_bytes(n)`` (the
board's random source: each HELLO gets a session id from it).  Optional hooks:
``load_counter() -> (epoch, counter)`` / ``store_counter(epoch, counter)`` persist the
relay counter and its epoch across reboots (otherwise a reboot re-opens the replay
window), and ``on_pulse(duration_ms)`` is told about each accepted pulse.

Fail secure: the relay is closed at boot, at the end of every pulse, on
RELAY_CLOSE and whenever the host link is lost; it is only opened by an
authenticated, fresh RELAY_PULSE inside an established session.  Only commands
that pass their tag and are fresh keep the link alive: a replayed or forged frame
can neither drive an output nor hold off the link-loss timeout.
"""

from firmware_bridge.protocol import (
    EPOCH_LOCKED,
    SESSION_LEN,
    BadPayload,
    FaultCode,
    Frame,
    FrameDecoder,
    Indicator,
    LinkKeys,
    MsgType,
    ResetCause,
    Result,
    command_tag,
    ct_equal,
    epoch_tag,
    pack_ack,
    pack_boot,
    pack_status,
    pack_u8,
    relay_tag,
    unpack_buzzer,
    unpack_indicator,
    unpack_new_epoch,
    unpack_nonce,
    unpack_relay_pulse,
    unpack_session_command,
)

FW_VERSION = "gatefw-ref 2.0"

# Body length of each session command (before its n u32 and tag).
SESSION_BODY_LEN = {
    MsgType.HEARTBEAT: 0,
    MsgType.RELAY_CLOSE: 0,
    MsgType.INDICATOR: 1,
    MsgType.BUZZER: 2,
}

# MicroPython has no ``typing``: the HAL's shape exists for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Hal(Protocol):
        def relay(self, open_: bool) -> None: ...
        def indicator(self, pattern: int) -> None: ...
        def buzzer(self, ms: int) -> None: ...
        def now_ms(self) -> int: ...
        def random_bytes(self, n: int) -> bytes: ...


class FirmwareCore:
    """Protocol state machine of the MCU: parses host commands, drives the HAL."""

    def __init__(
        self,
        hal: "Hal",
        hmac_key: bytes,
        heartbeat_timeout_ms: int = 1000,
        max_pulse_ms: int = 5000,
    ) -> None:
        self._keys = LinkKeys(hmac_key)  # ValueError for a short key
        self.hal = hal
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.max_pulse_ms = max_pulse_ms
        self.decoder = FrameDecoder()
        self._tx_seq = 0
        self.duplicates = 0
        self.epoch = 0
        self.last_counter = 0
        self._reset_state()

    # ----------------------------------------------------------------- state

    def _reset_state(self) -> None:
        self.relay_open = False
        self.indicator = Indicator.OUT_OF_SERVICE
        self.session = False  # True between HELLO and link loss / reboot
        self._session_id = bytes(SESSION_LEN)
        self._session_n = 0  # last session command number accepted
        self.link_ok = False
        self.door_open = False
        self._pulse_end: int | None = None
        self._last_rx: int | None = None  # last fresh, authenticated command
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

    def _emit_status(self, nonce: bytes) -> bytes:
        """STATUS for the host's ``nonce``, tagged with the seq it goes out with."""
        payload = pack_status(
            self._keys,
            self._tx_seq,
            nonce,
            self.relay_open,
            self.indicator,
            self.link_ok,
            self.epoch,
            self.last_counter,
            self._session_id,
        )
        return self._emit(MsgType.STATUS, payload)

    def _fed(self) -> None:
        """A fresh, authenticated command arrived: the host is there."""
        self._last_rx = self.hal.now_ms()
        self.link_ok = True

    # ------------------------------------------------------------ public API

    def boot(self, reset_cause: int = ResetCause.POWER_ON) -> bytes:
        """Power-up / reset: relay closed, OUT_OF_SERVICE, announce BOOT."""
        self._reset_state()
        stored = self._hook("load_counter")
        self.epoch, self.last_counter = stored if isinstance(stored, tuple) else (0, 0)
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

    # ------------------------------------------------------------- commands

    def _handle(self, frame: Frame) -> bytes:
        if frame.msg_type not in MsgType.HOST_TO_MCU:
            return b""  # MCU->host types are never commands; ignore
        key = (frame.msg_type, frame.seq, frame.payload)
        if key == self._last_cmd and frame.msg_type != MsgType.HELLO:
            # Retransmission of the command just executed: its ACK was lost. Answered
            # from the cache; it does not count as the host being there (a copy of an
            # old frame is no proof of that).
            self.duplicates += 1
            return self._last_reply
        reply = self._execute(frame)
        self._last_cmd = key
        self._last_reply = reply
        return reply

    def _execute(self, frame: Frame) -> bytes:
        t = frame.msg_type
        p = frame.payload
        nonce = None  # set for the commands answered with a STATUS
        try:
            if t == MsgType.HELLO:
                nonce = unpack_nonce(p, "HELLO")
                self._start_session()
                result = Result.OK
            elif t == MsgType.STATUS_REQUEST:
                nonce = unpack_nonce(p, "STATUS_REQUEST")
                result = Result.OK
            elif not self.session:
                # Everything else needs a session: REJECTED_BAD tells the host to HELLO.
                result = Result.REJECTED_BAD
            elif t == MsgType.RELAY_PULSE:
                result = self._relay_pulse(p)
            elif t == MsgType.NEW_EPOCH:
                result = self._new_epoch(p)
            else:
                result = self._session_command(t, p)
        except BadPayload:
            result = Result.REJECTED_BAD
            nonce = None
        out = self._emit(MsgType.ACK, pack_ack(frame.seq, result))
        if nonce is not None:
            out += self._emit_status(nonce)
        return out

    def _start_session(self) -> None:
        """HELLO: a new session id, command numbers from 1. It does not feed the link
        timer of a session already running (anyone can send HELLO)."""
        if not self.session:
            self._last_rx = self.hal.now_ms()
        self.session = True
        self.link_ok = True
        self._session_id = bytes(self.hal.random_bytes(SESSION_LEN))
        self._session_n = 0
        if self.indicator == Indicator.OUT_OF_SERVICE:
            self._set_indicator(Indicator.OFF)

    def _session_command(self, t: int, payload: bytes) -> int:
        body, n, tag = unpack_session_command(payload, SESSION_BODY_LEN[t], MsgType.name(t))
        if not ct_equal(tag, command_tag(self._keys, t, self._session_id, n, body)):
            return Result.REJECTED_AUTH
        if n <= self._session_n:
            return Result.REJECTED_STALE
        self._session_n = n
        self._fed()
        if t == MsgType.RELAY_CLOSE:
            self._set_relay(False)
        elif t == MsgType.INDICATOR:
            self._set_indicator(unpack_indicator(body))
        elif t == MsgType.BUZZER:
            self.hal.buzzer(unpack_buzzer(body))
        return Result.OK

    def _relay_pulse(self, payload: bytes) -> int:
        duration, counter, tag = unpack_relay_pulse(payload)
        if duration == 0:
            return Result.REJECTED_BAD
        if not ct_equal(tag, relay_tag(self._keys, self.epoch, duration, counter)):
            return Result.REJECTED_AUTH
        if counter <= self.last_counter:
            return Result.REJECTED_STALE
        self._fed()
        self._hook("store_counter", self.epoch, counter)  # before the relay opens
        self.last_counter = counter
        duration = min(duration, self.max_pulse_ms)
        self._set_relay(True)
        self._pulse_end = self.hal.now_ms() + duration
        self._hook("on_pulse", duration)
        return Result.OK

    def _new_epoch(self, payload: bytes) -> int:
        """The host's recovery of a used-up or poisoned counter: epoch + 1, counter 0.

        Old pulses carry the old epoch in their tags, so none becomes valid again; a
        replayed NEW_EPOCH names an epoch already reached and is stale.
        """
        new_epoch, tag = unpack_new_epoch(payload)
        if not ct_equal(tag, epoch_tag(self._keys, new_epoch)):
            return Result.REJECTED_AUTH
        if new_epoch <= self.epoch:
            return Result.REJECTED_STALE  # also every epoch of a locked store
        if new_epoch != self.epoch + 1 or new_epoch == EPOCH_LOCKED:
            return Result.REJECTED_BAD
        self._fed()
        self._hook("store_counter", new_epoch, 0)
        self.epoch = new_epoch
        self.last_counter = 0
        return Result.OK

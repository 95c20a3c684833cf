"""Host-side driver for the gate MCU over a serial port (pyserial).

:class:`GateLink` owns the port, a reader thread (COBS stream -> frames), a
heartbeat thread (keeps the MCU's fail-secure watchdog fed and re-establishes
the session after an MCU reboot or link loss) and an event thread (runs user
callbacks so they may call back into the link without deadlocking the reader).

Commands are stop-and-wait: one outstanding command at a time, retransmitted
with the same seq until ACKed, so the MCU's duplicate filter (same seq and
bytes as the last executed command) makes retransmission idempotent.
"""

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import serial

from firmware_bridge.protocol import (
    MIN_KEY_LEN,
    BadPayload,
    BridgeError,
    FaultCode,
    Frame,
    FrameDecoder,
    MsgType,
    Result,
    pack_buzzer,
    pack_indicator,
    pack_relay_pulse,
    unpack_ack,
    unpack_boot,
    unpack_status,
    unpack_u8,
)

log = logging.getLogger(__name__)


class LinkError(BridgeError):
    """The MCU could not be reached (port closed/vanished, no ACK after retries)."""


class CommandRejected(BridgeError):
    """The MCU ACKed a command with a non-OK result; ``result`` holds the code."""

    def __init__(self, command: str, result: int) -> None:
        super().__init__(f"MCU rejected {command}: {Result.name(result)}")
        self.command = command
        self.result = result


# ------------------------------------------------------------------------ events


@dataclass(frozen=True)
class OptOutPressed:
    """Passenger pressed the opt-out button."""


@dataclass(frozen=True)
class DoorChanged:
    open: bool


@dataclass(frozen=True)
class Boot:
    """MCU (re)booted: its relay is closed and the session must be re-established."""

    fw_version: str
    reset_cause: int


@dataclass(frozen=True)
class Fault:
    code: int

    @property
    def name(self) -> str:
        return FaultCode.name(self.code)


@dataclass(frozen=True)
class LinkState:
    up: bool


Event = OptOutPressed | DoorChanged | Boot | Fault | LinkState


@dataclass(frozen=True)
class Status:
    relay_open: bool
    indicator: int
    last_counter: int
    heartbeat_ok: bool


_SERIAL_ERRORS = (serial.SerialException, OSError, TypeError, AttributeError)


class GateLink:
    """Thread-safe driver for the gate MCU on ``port``."""

    def __init__(
        self,
        port: str,
        hmac_key: bytes,
        *,
        heartbeat_interval: float = 0.25,
        ack_timeout: float = 0.2,
        retries: int = 3,
        counter_start: int = 0,
        baudrate: int = 115200,
        reconnect_max_backoff: float = 2.0,
    ) -> None:
        if len(hmac_key) < MIN_KEY_LEN:
            raise ValueError(f"HMAC key must be at least {MIN_KEY_LEN} bytes")
        if not 0 <= counter_start <= 0xFFFFFFFF:
            raise ValueError("counter_start must fit in u32")
        self.port = port
        self._key = bytes(hmac_key)
        self.heartbeat_interval = heartbeat_interval
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.baudrate = baudrate
        self.reconnect_max_backoff = reconnect_max_backoff
        self._counter = counter_start
        self._seq = os.urandom(1)[0]  # random start: no confusion with a previous session
        self._ser: serial.Serial | None = None
        self._ser_lock = threading.Lock()  # guards _ser and writes
        self._cmd_lock = threading.RLock()  # one outstanding command (stop-and-wait)
        self._cond = threading.Condition()  # guards _acks / _status
        self._acks: dict[int, int] = {}
        self._status: Status | None = None
        self._status_gen = 0
        self._decoder = FrameDecoder()
        self._need_hello = True
        self._link_up = False
        self._callbacks: list[Callable[[Event], None]] = []
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.retransmissions = 0

    # --------------------------------------------------------------- lifecycle

    def open(self) -> "GateLink":
        """Open the port, start the threads and say HELLO (raises LinkError)."""
        if self._threads:
            raise RuntimeError("GateLink already open")
        self._ser = self._open_serial()
        self._stop.clear()
        self._events = queue.Queue()
        self._need_hello = True
        for target, name in (
            (self._reader, "gate-link-reader"),
            (self._heartbeat, "gate-link-heartbeat"),
            (self._dispatch, "gate-link-events"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
            t.start()
        try:
            self.hello()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop threads and close the port. Does not command the relay: the MCU
        closes it on its own once heartbeats stop (fail secure)."""
        self._stop.set()
        self._events.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2)
        self._threads = []
        with self._ser_lock:
            if self._ser is not None:
                with contextlib.suppress(*_SERIAL_ERRORS):
                    self._ser.close()
                self._ser = None
        self._link_up = False

    def __enter__(self) -> "GateLink":
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def link_up(self) -> bool:
        """True while the MCU answers and a session is established."""
        return self._link_up

    @property
    def counter(self) -> int:
        """Last relay counter used (the next pulse uses a larger one)."""
        return self._counter

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Register ``callback(event)``; called on a dedicated event thread."""
        self._callbacks.append(callback)

    # ---------------------------------------------------------------- commands

    def hello(self) -> None:
        """Establish the session and resync the relay counter from STATUS."""
        with self._cmd_lock:
            self._need_hello = False  # a BOOT arriving from now on sets it again
            try:
                self._check("HELLO", self.send_command(MsgType.HELLO))
                status = self.request_status()
            except BaseException:
                self._need_hello = True
                raise
            self._counter = max(self._counter, status.last_counter)
            self._set_link(True)

    def pulse_relay(self, ms: int) -> None:
        """Open the gate relay for ``ms`` (the MCU caps it); authenticated, fresh counter."""
        if not 1 <= ms <= 0xFFFF:
            raise ValueError("pulse duration must be 1-65535 ms")
        with self._cmd_lock:
            result = self._send_pulse(ms)
            if result == Result.REJECTED_STALE:
                # The MCU saw a larger counter (e.g. another host run): resync once.
                self._counter = max(self._counter, self.request_status().last_counter)
                result = self._send_pulse(ms)
            self._check("RELAY_PULSE", result)

    def _send_pulse(self, ms: int) -> int:
        if self._counter >= 0xFFFFFFFF:
            raise LinkError("relay counter exhausted; re-key the gate")
        self._counter += 1
        payload = pack_relay_pulse(self._key, ms, self._counter)
        return self.send_command(MsgType.RELAY_PULSE, payload)

    def close_relay(self) -> None:
        """Close the relay now (never needs authentication)."""
        self._check("RELAY_CLOSE", self.send_command(MsgType.RELAY_CLOSE))

    def set_indicator(self, pattern: int) -> None:
        """Show an :class:`Indicator` pattern."""
        self._check("INDICATOR", self.send_command(MsgType.INDICATOR, pack_indicator(pattern)))

    def buzzer(self, ms: int) -> None:
        """Sound the buzzer for ``ms``."""
        if not 0 <= ms <= 0xFFFF:
            raise ValueError("buzzer duration must be 0-65535 ms")
        self._check("BUZZER", self.send_command(MsgType.BUZZER, pack_buzzer(ms)))

    def request_status(self) -> Status:
        """Ask the MCU for its STATUS (sent right after the ACK)."""
        with self._cmd_lock:
            result, status = self._transact(MsgType.STATUS_REQUEST, b"", want_status=True)
            self._check("STATUS_REQUEST", result)
            assert status is not None
            return status

    def send_command(self, msg_type: int, payload: bytes = b"") -> int:
        """Low-level: send one command, wait for its ACK, return the result code."""
        with self._cmd_lock:
            return self._transact(msg_type, payload, want_status=False)[0]

    @staticmethod
    def _check(command: str, result: int) -> None:
        if result != Result.OK:
            raise CommandRejected(command, result)

    def _transact(self, msg_type: int, payload: bytes, want_status: bool) -> tuple:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        wire = Frame(msg_type, seq, payload).encode()
        attempts = self.retries + 1
        with self._cond:
            self._acks.pop(seq, None)
        for attempt in range(attempts):
            if attempt:
                self.retransmissions += 1
            with self._cond:
                gen = self._status_gen
            self._write(wire)
            with self._cond:
                ok = self._cond.wait_for(
                    lambda gen=gen: (
                        seq in self._acks and (not want_status or self._status_gen != gen)
                    ),
                    timeout=self.ack_timeout,
                )
                if ok:
                    result = self._acks.pop(seq)
                    return result, self._status
        self._need_hello = True
        self._set_link(False)
        raise LinkError(
            f"no ACK from MCU on {self.port} for {MsgType.name(msg_type)} seq={seq} "
            f"after {attempts} attempts"
        )

    # ------------------------------------------------------------------ serial

    def _open_serial(self) -> serial.Serial:
        try:
            ser = serial.Serial(self.port, baudrate=self.baudrate, timeout=0.05, write_timeout=1)
            ser.write(b"\x00")  # flush any half frame in the MCU's decoder
            return ser
        except _SERIAL_ERRORS as e:
            raise LinkError(f"cannot open serial port {self.port}: {e}") from e

    def _write(self, data: bytes) -> None:
        with self._ser_lock:
            ser = self._ser
            if ser is None:
                raise LinkError(f"serial port {self.port} is not open")
            try:
                ser.write(data)
            except _SERIAL_ERRORS as e:
                self._lost_port_locked(e)
                raise LinkError(f"write to {self.port} failed: {e}") from e

    def _lost_port_locked(self, err: BaseException) -> None:
        if self._ser is not None:
            log.warning("serial port %s lost: %s", self.port, err)
            with contextlib.suppress(*_SERIAL_ERRORS):
                self._ser.close()
            self._ser = None
        self._need_hello = True
        self._set_link(False)

    # ----------------------------------------------------------------- threads

    def _reader(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            with self._ser_lock:
                ser = self._ser
            if ser is None:
                # Port vanished: reopen with exponential backoff.
                if self._stop.wait(backoff):
                    return
                try:
                    new = self._open_serial()
                except LinkError:
                    backoff = min(backoff * 2, self.reconnect_max_backoff)
                    continue
                with self._ser_lock:
                    self._ser = new
                self._decoder.reset()
                self._need_hello = True  # heartbeat thread re-establishes the session
                backoff = 0.05
                continue
            try:
                n = ser.in_waiting
                data = ser.read(n if n else 1)
            except _SERIAL_ERRORS as e:
                if self._stop.is_set():
                    return
                with self._ser_lock:
                    if self._ser is ser:
                        self._lost_port_locked(e)
                continue
            if data:
                for frame in self._decoder.feed(data):
                    self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        t = frame.msg_type
        try:
            if t == MsgType.ACK:
                seq, result = unpack_ack(frame.payload)
                with self._cond:
                    self._acks[seq] = result
                    self._cond.notify_all()
            elif t == MsgType.STATUS:
                relay, ind, counter, hb = unpack_status(frame.payload)
                with self._cond:
                    self._status = Status(relay, ind, counter, hb)
                    self._status_gen += 1
                    self._cond.notify_all()
            elif t == MsgType.BOOT:
                ver, cause = unpack_boot(frame.payload)
                self._need_hello = True
                self._set_link(False)
                self._events.put(Boot(ver, cause))
            elif t == MsgType.OPT_OUT_PRESSED:
                self._events.put(OptOutPressed())
            elif t == MsgType.DOOR:
                self._events.put(DoorChanged(bool(unpack_u8(frame.payload, "DOOR"))))
            elif t == MsgType.FAULT:
                code = unpack_u8(frame.payload, "FAULT")
                if code == FaultCode.LINK_LOST:
                    self._need_hello = True
                    self._set_link(False)
                self._events.put(Fault(code))
        except BadPayload as e:
            log.warning("ignoring malformed %s from MCU: %s", MsgType.name(t), e)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            if self._ser is None:
                continue
            try:
                if self._need_hello:
                    self.hello()
                elif self.send_command(MsgType.HEARTBEAT) != Result.OK:
                    self._need_hello = True  # MCU lost our session
                    self._set_link(False)
            except (LinkError, CommandRejected) as e:
                log.debug("heartbeat failed: %s", e)

    def _set_link(self, up: bool) -> None:
        with self._cond:
            changed = up != self._link_up
            self._link_up = up
        if changed:
            self._events.put(LinkState(up))

    def _dispatch(self) -> None:
        while True:
            ev = self._events.get()
            if ev is None or self._stop.is_set():
                return
            for cb in list(self._callbacks):
                try:
                    cb(ev)
                except Exception:
                    log.exception("gate event callback failed for %r", ev)


__all__ = [
    "Boot",
    "CommandRejected",
    "DoorChanged",
    "Event",
    "Fault",
    "GateLink",
    "LinkError",
    "LinkState",
    "OptOutPressed",
    "Status",
]

"""Host-side driver for the gate MCU over a serial port (pyserial).

:class:`GateLink` owns the port, a reader thread (COBS stream -> frames), a
heartbeat thread (keeps the MCU's fail-secure watchdog fed and re-establishes
the session after an MCU reboot or link loss) and an event thread (runs user
callbacks so they may call back into the link without deadlocking the reader).

Commands are stop-and-wait: one outstanding command at a time, retransmitted
with the same seq until ACKed, so the MCU's duplicate filter (same seq and
bytes as the last executed command) makes retransmission idempotent.

Authentication (``PROTOCOL.md``): the greeting (HELLO) and every STATUS request carry a
fresh random nonce, and only a STATUS whose tag verifies for it is read; anything else
is dropped and counted (:attr:`GateLink.forged_status`). The session id the MCU returns
with HELLO keys the heartbeat, relay close, indicator, buzzer and relay pulse commands. A
pulse that goes unanswered ends its session (the host greets again at once), so a pulse
held back on the line can never open the gate later; the greeting's STATUS says whether
the MCU took it before. The relay counter is the host's own
(:class:`~firmware_bridge.relay_counter.RelayCounter`): an authenticated counter that is
implausible puts the link out of service (:class:`CounterImplausible`, one journal line)
and is never written to the MCU.
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

from firmware_bridge.errors import CommandRejected, CounterImplausible, LinkError, NotAuthentic
from firmware_bridge.protocol import (
    EPOCH_LOCKED,
    NONCE_LEN,
    SESSION_LEN,
    BadPayload,
    FaultCode,
    Frame,
    FrameDecoder,
    Indicator,
    LinkKeys,
    MsgType,
    Result,
    pack_buzzer,
    pack_indicator,
    pack_new_epoch,
    pack_relay_pulse,
    pack_session_command,
    status_authentic,
    unpack_ack,
    unpack_boot,
    unpack_status,
    unpack_u8,
)
from firmware_bridge.relay_counter import REDEPLOY_HINT, RelayCounter

log = logging.getLogger(__name__)


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
    """An authenticated STATUS: it answered this host's nonce."""

    relay_open: bool
    indicator: int
    last_counter: int
    heartbeat_ok: bool
    epoch: int  # the relay counter's epoch
    session: bytes  # the MCU's session id (new at every HELLO)


def _took(status: Status, epoch: int, counter: int) -> bool:
    """Whether the MCU, as its authenticated ``status`` shows, took the pulse ``counter``."""
    return status.epoch == epoch and status.last_counter >= counter


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
        self._keys = LinkKeys(hmac_key)  # ValueError for a short key
        self._relay = RelayCounter(counter_start)  # ValueError for an unusable start
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.baudrate = baudrate
        self.reconnect_max_backoff = reconnect_max_backoff
        self._seq = os.urandom(1)[0]  # random start: no confusion with a previous session
        self._session = bytes(SESSION_LEN)  # the MCU's, from the last greeting
        self._cmd_n = 0  # last session command number used in it
        self._unsettled_pulse: tuple[int, int] | None = None  # (epoch, counter) unanswered
        self._ser: serial.Serial | None = None
        self._ser_lock = threading.Lock()  # guards _ser and writes
        self._cmd_lock = threading.RLock()  # one outstanding command (stop-and-wait)
        self._cond = threading.Condition()  # guards _acks / _status
        self._acks: dict[int, int] = {}
        self._status_nonce: bytes | None = None  # the STATUS being waited for answers it
        self._status: Status | None = None
        self._logged_fault: str | None = None
        self._decoder = FrameDecoder()
        self._need_hello = True
        self._link_up = False
        self._callbacks: list[Callable[[Event], None]] = []
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.retransmissions = 0
        self.forged_status = 0  # STATUS frames dropped: they did not verify

    # --------------------------------------------------------------- lifecycle

    def open(self) -> "GateLink":
        """Open the port, start the threads and greet the MCU (raises LinkError).

        An implausible relay counter does not stop it (the link can still show
        OUT_OF_SERVICE, and :meth:`start_new_epoch` repairs the counter), but the link is
        not up then, and :meth:`hello` and :meth:`pulse_relay` raise CounterImplausible.
        """
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
            self._establish()
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
        """True while the MCU answers, a session is established and the counter is sound."""
        return self._link_up

    @property
    def counter(self) -> int:
        """Last relay counter used or seen (the next pulse uses a larger one)."""
        return self._relay.value

    @property
    def epoch(self) -> int | None:
        """The relay counter's epoch, as the MCU last proved it (None before that)."""
        return self._relay.epoch

    @property
    def counter_fault(self) -> str | None:
        """Why the relay counter cannot be used (the gate is out of service), or None."""
        return self._relay.fault

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Register ``callback(event)``; called on a dedicated event thread."""
        self._callbacks.append(callback)

    # ---------------------------------------------------------------- commands

    def hello(self) -> None:
        """Greet again: a new session, the counter resynced from the authenticated STATUS.

        Raises CounterImplausible if that counter cannot be used (see ``relay_counter``).
        """
        self._establish()
        fault = self._relay.fault
        if fault is not None:
            raise CounterImplausible(fault)

    def _establish(self) -> Status:
        """HELLO with a fresh nonce, then adopt the counter of its authenticated STATUS."""
        with self._cmd_lock:
            self._need_hello = False  # a BOOT arriving from now on sets it again
            try:
                status = self._greet()
            except BaseException:
                self._need_hello = True
                raise
            self._settle_pulse(status)
            try:
                self._relay.adopt(status.epoch, status.last_counter)
            except CounterImplausible as exc:
                self._out_of_service(exc)
                return status
            self._logged_fault = None
            self._set_link(True)
            return status

    def _greet(self) -> Status:
        nonce = os.urandom(NONCE_LEN)
        result, status = self._transact(MsgType.HELLO, nonce, nonce=nonce)
        self._check("HELLO", result)
        assert status is not None
        self._session = status.session
        self._cmd_n = 0
        return status

    def _out_of_service(self, fault: CounterImplausible) -> None:
        """The counter cannot be used: link down, the MCU shut and red, one journal line."""
        if str(fault) != self._logged_fault:
            log.error("gate out of service: %s", fault)
            self._logged_fault = str(fault)
        self._set_link(False)
        with contextlib.suppress(LinkError, CommandRejected):
            self._session_command("RELAY_CLOSE", MsgType.RELAY_CLOSE, regreet=False)
            body = pack_indicator(Indicator.OUT_OF_SERVICE)
            self._session_command("INDICATOR", MsgType.INDICATOR, body, regreet=False)

    def pulse_relay(self, ms: int) -> None:
        """Open the gate relay for ``ms`` (the MCU caps it); authenticated, fresh counter.

        Raises LinkError if the MCU did not take it; then it never will (see
        :meth:`_unanswered_pulse`).
        """
        if not 1 <= ms <= 0xFFFF:
            raise ValueError("pulse duration must be 1-65535 ms")
        with self._cmd_lock:
            result = self._send_pulse(ms)
            if result == Result.REJECTED_STALE:
                # The MCU saw a larger counter (e.g. another host run): resync once, from
                # its authenticated STATUS and within the counter's rules.
                self._adopt(self.request_status())
                result = self._send_pulse(ms)
            elif result != Result.OK and not self._need_hello:
                # Somebody greeted the MCU meanwhile, so the pulse named a session it no
                # longer has (a refused pulse opened nothing): greet again, send it once more.
                self._establish()
                result = self._send_pulse(ms)
            self._check("RELAY_PULSE", result)

    def _adopt(self, status: Status) -> None:
        try:
            self._relay.adopt(status.epoch, status.last_counter)
        except CounterImplausible as exc:
            self._out_of_service(exc)
            raise

    def _send_pulse(self, ms: int) -> int:
        try:
            epoch, counter = self._relay.next_pulse()
        except CounterImplausible as exc:
            self._out_of_service(exc)
            raise
        self._cmd_n += 1
        payload = pack_relay_pulse(
            self._keys, epoch, ms, counter, session=self._session, n=self._cmd_n
        )
        try:
            return self.send_command(MsgType.RELAY_PULSE, payload)
        except LinkError as exc:
            return self._unanswered_pulse(epoch, counter, exc)

    def _unanswered_pulse(self, epoch: int, counter: int, exc: LinkError) -> int:
        """No ACK for a pulse: lost, or held back by someone on the line to be delivered
        when it suits them. Greet again at once: the new session id retires the pulse (its
        tag names the old session), and the greeting's authenticated STATUS says whether
        the MCU took it before. -> Result.OK if it did (only its ACK was lost); else raises
        LinkError. If the MCU does not answer the greeting either, the host sends nothing
        but greetings from then on, so the old session ends on the MCU's link timer."""
        self._unsettled_pulse = (epoch, counter)
        try:
            status = self._establish()
        except (LinkError, CommandRejected) as again:
            raise LinkError(
                f"RELAY_PULSE (counter {counter}) was not acknowledged ({exc}) and the MCU "
                f"on {self.port} did not answer a new greeting either ({again}); its session "
                "ends when the MCU's link timer runs out, and the next greeting logs whether "
                "the pulse was taken before"
            ) from exc
        if _took(status, epoch, counter):
            return Result.OK
        raise LinkError(
            f"RELAY_PULSE (counter {counter}) was not acknowledged ({exc}); the MCU's "
            "authenticated STATUS shows it did not take it, and in the new session it never can"
        ) from exc

    def _settle_pulse(self, status: Status) -> None:
        """After a greeting: whether the MCU took the pulse left unanswered (journal line)."""
        if self._unsettled_pulse is None:
            return
        epoch, counter = self._unsettled_pulse
        self._unsettled_pulse = None
        if _took(status, epoch, counter):
            log.warning(
                "relay pulse %d: its ACK was lost, but the MCU's authenticated STATUS shows "
                "it took the pulse (the gate opened)",
                counter,
            )
        else:
            log.warning(
                "relay pulse %d was never taken by the MCU, and cannot be now: its session "
                "has ended",
                counter,
            )

    def start_new_epoch(self) -> tuple[Status, Status]:
        """Recover the relay counter: the MCU moves to epoch + 1 with counter 0.

        The technician's repair of a used-up or poisoned counter (``gatectl provision
        --rotate``): NEW_EPOCH is tagged with the relay key, so nobody on the line can
        send it, and it depends on no value from the line but the MCU's authenticated
        epoch. Pulses signed in older epochs never verify again. -> (before, after).
        """
        with self._cmd_lock:
            if self._need_hello:
                self._establish()
            before = self.request_status()
            if before.epoch + 1 >= EPOCH_LOCKED:
                raise CounterImplausible(
                    f"the MCU's relay counter store is locked or out of epochs: {REDEPLOY_HINT}"
                )
            new_epoch = before.epoch + 1
            payload = pack_new_epoch(self._keys, new_epoch)
            self._check("NEW_EPOCH", self.send_command(MsgType.NEW_EPOCH, payload))
            after = self.request_status()
            if (after.epoch, after.last_counter) != (new_epoch, 0):
                raise CounterImplausible(
                    f"the MCU reports epoch {after.epoch}, counter {after.last_counter} "
                    f"after starting epoch {new_epoch}"
                )
            self._relay.adopt(after.epoch, after.last_counter)
            log.warning(
                "relay counter: new epoch %d started (was epoch %d at counter %d)",
                after.epoch,
                before.epoch,
                before.last_counter,
            )
            self._logged_fault = None
            self._set_link(True)
            return before, after

    def close_relay(self) -> None:
        """Close the relay now. An authenticated session command, so nobody on the line
        can cut a pulse short; the MCU also closes it by itself at the pulse's end and
        when the link is lost."""
        self._session_command("RELAY_CLOSE", MsgType.RELAY_CLOSE)

    def set_indicator(self, pattern: int) -> None:
        """Show an :class:`Indicator` pattern (authenticated, like every output)."""
        self._session_command("INDICATOR", MsgType.INDICATOR, pack_indicator(pattern))

    def buzzer(self, ms: int) -> None:
        """Sound the buzzer for ``ms``."""
        if not 0 <= ms <= 0xFFFF:
            raise ValueError("buzzer duration must be 0-65535 ms")
        self._session_command("BUZZER", MsgType.BUZZER, pack_buzzer(ms))

    def _session_command(
        self, name: str, msg_type: int, body: bytes = b"", *, regreet: bool = True
    ) -> None:
        """Send a command of the current session. If the MCU refuses it because somebody
        greeted it meanwhile (another session id), greet again and send it once more; after
        a BOOT or a lost link the refusal stands (the link is down: the heartbeat greets
        at its next tick, and the gate shows it was out of service meanwhile)."""
        with self._cmd_lock:
            result = self._send_session(msg_type, body)
            if result != Result.OK and regreet and not self._need_hello:
                self._establish()
                result = self._send_session(msg_type, body)
            self._check(name, result)

    def _send_session(self, msg_type: int, body: bytes) -> int:
        self._cmd_n += 1
        payload = pack_session_command(self._keys, msg_type, self._session, self._cmd_n, body)
        return self.send_command(msg_type, payload)

    def request_status(self) -> Status:
        """Ask the MCU for its STATUS (sent right after the ACK, for a fresh nonce)."""
        with self._cmd_lock:
            nonce = os.urandom(NONCE_LEN)
            result, status = self._transact(MsgType.STATUS_REQUEST, nonce, nonce=nonce)
            self._check("STATUS_REQUEST", result)
            assert status is not None
            if status.session != self._session:
                self._need_hello = True  # the MCU is in another session: greet again
            return status

    def send_command(self, msg_type: int, payload: bytes = b"") -> int:
        """Low-level: send one command, wait for its ACK, return the result code."""
        with self._cmd_lock:
            return self._transact(msg_type, payload)[0]

    @staticmethod
    def _check(command: str, result: int) -> None:
        if result != Result.OK:
            raise CommandRejected(command, result)

    def _transact(
        self, msg_type: int, payload: bytes, nonce: bytes | None = None
    ) -> tuple[int, Status | None]:
        """Send, retransmit until ACKed; with ``nonce``, also wait for its authentic STATUS."""
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        wire = Frame(msg_type, seq, payload).encode()
        attempts = self.retries + 1
        with self._cond:
            self._acks.pop(seq, None)
            self._status_nonce = nonce
            self._status = None
            forged_before = self.forged_status

        def answered() -> bool:
            if seq not in self._acks:
                return False
            return nonce is None or self._acks[seq] != Result.OK or self._status is not None

        acked = False
        try:
            for attempt in range(attempts):
                if attempt:
                    self.retransmissions += 1
                self._write(wire)
                with self._cond:
                    if self._cond.wait_for(answered, timeout=self.ack_timeout):
                        return self._acks.pop(seq), self._status
                    acked = acked or seq in self._acks
        finally:
            with self._cond:
                self._status_nonce = None
        self._need_hello = True
        self._set_link(False)
        name = MsgType.name(msg_type)
        forged = self.forged_status - forged_before
        if acked and forged:
            raise NotAuthentic(
                f"the MCU on {self.port} ACKed {name} but none of the {forged} STATUS frames "
                "that came back verified: it holds another relay key, or frames are being "
                "forged on the line"
            )
        if acked:
            raise LinkError(f"no STATUS from MCU on {self.port} for {name} seq={seq}")
        raise LinkError(
            f"no ACK from MCU on {self.port} for {name} seq={seq} after {attempts} attempts"
        )

    # ------------------------------------------------------------------ serial

    def _open_serial(self) -> serial.Serial:
        try:
            # exclusive: an advisory lock on the port, so a second driver (another service,
            # a serial test) is refused instead of interleaving frames with this one
            ser = serial.Serial(
                self.port, baudrate=self.baudrate, timeout=0.05, write_timeout=1, exclusive=True
            )
            ser.write(b"\x00")  # flush any half frame in the MCU's decoder
            return ser
        except _SERIAL_ERRORS as e:
            if "exclusively lock" in str(e):
                raise LinkError(
                    f"serial port {self.port} is held by another process (is the gate"
                    " service running? stop it first)"
                ) from e
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
                self._on_status(frame)
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

    def _on_status(self, frame: Frame) -> None:
        """Keep a STATUS only if it answers the nonce being waited for, under our key."""
        with self._cond:
            nonce = self._status_nonce
            if nonce is not None and status_authentic(self._keys, frame.seq, frame.payload, nonce):
                relay, ind, hb, epoch, counter, session, _ = unpack_status(frame.payload)
                self._status = Status(relay, ind, counter, hb, epoch, session)
                self._cond.notify_all()
                return
            self.forged_status += 1
            first = self.forged_status == 1
        # Forged, replayed, unasked for, or under another key: never read. Logged on the
        # first one and then every 100th, so a flood cannot fill the journal.
        if first or self.forged_status % 100 == 0:
            log.warning(
                "dropped a STATUS from %s that does not verify (%d so far): forged, replayed "
                "or another relay key",
                self.port,
                self.forged_status,
            )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            if self._ser is None:
                continue
            try:
                if self._need_hello:
                    self._establish()
                else:
                    # Refused (the MCU rebooted or another greeting replaced our session):
                    # the link is down until the next tick greets again, so the gate
                    # shows that it lost the MCU instead of carrying on as if nothing was.
                    self._session_command("HEARTBEAT", MsgType.HEARTBEAT, regreet=False)
            except CommandRejected as e:
                self._need_hello = True
                self._set_link(False)
                log.debug("heartbeat failed: %s", e)
            except LinkError as e:
                log.debug("heartbeat failed: %s", e)

    def _set_link(self, up: bool) -> None:
        up = up and self._relay.fault is None
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
    "CounterImplausible",
    "DoorChanged",
    "Event",
    "Fault",
    "GateLink",
    "LinkError",
    "LinkState",
    "NotAuthentic",
    "OptOutPressed",
    "Status",
]

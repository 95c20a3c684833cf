"""Gate MCU simulator: the reference firmware behind a real pseudo-terminal.

The host driver opens :attr:`Simulator.port` with pyserial exactly as it would
open the MCU's UART, so tests exercise the real serial stack.  Fault injection
(dropped / corrupted frames, lost replies, link pause, reboot) lets tests prove the
retransmission and fail-secure paths; it happens here, on the line, so it is the
same whichever interpreter runs the firmware (``interpreter="cpython"``, the default,
or ``"micropython"``: see ``backends``).

Run ``python -m firmware_bridge.simulator [--interpreter micropython]`` to get a port
for manual testing.
"""

import argparse
import errno
import os
import select
import signal
import sys
import threading
import time
from types import TracebackType

from firmware_bridge.protocol import Indicator, ResetCause
from firmware_bridge.simulator.backends import INTERPRETERS, SimulatedFirmware
from firmware_bridge.simulator.interpreters import open_firmware
from firmware_bridge.simulator.micropython_runtime import SimulatorError
from firmware_bridge.simulator.ptys import close_fds, open_raw_pty

# Development key only: the simulator prints a warning when it falls back to it.
DEV_KEY = b"gate-dev-key-NOT-FOR-PRODUCTION!"


class Simulator:
    """The firmware on a pty master, serviced by a background thread. Thread-safe.

    ``interpreter`` picks the backend (:data:`INTERPRETERS`); the MicroPython one starts
    a ``node`` child in :meth:`start` and raises :class:`SimulatorError` if its runtime
    is missing or altered.
    """

    def __init__(
        self,
        hmac_key: bytes,
        *,
        heartbeat_timeout_ms: int = 1000,
        max_pulse_ms: int = 5000,
        tick_interval: float = 0.01,
        interpreter: str = "cpython",
    ) -> None:
        if interpreter not in INTERPRETERS:
            raise ValueError(f"interpreter must be one of {', '.join(INTERPRETERS)}")
        self.interpreter = interpreter
        self._key = bytes(hmac_key)
        self._hb_timeout = heartbeat_timeout_ms
        self._max_pulse = max_pulse_ms
        self._tick_interval = tick_interval
        self._lock = threading.RLock()
        self._firmware: SimulatedFirmware | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._rx = bytearray()
        self._drop_in = 0
        self._corrupt_in = 0
        self._drop_out = 0
        self._paused_until = 0.0
        self.port = ""
        self.boots = 0
        self.frames_received = 0
        self.frames_dropped = 0  # by drop_next()
        self.frames_corrupted = 0  # by corrupt_next()
        self.replies_dropped = 0  # by drop_next_reply()
        self.failure: SimulatorError | None = None  # why the firmware stopped answering

    # --------------------------------------------------------------- lifecycle

    def start(self) -> "Simulator":
        """Start the firmware, open the pty, send BOOT and start servicing the line.

        BOOT is in the pty before this returns, so a host that opens the port next sees
        it first and never mistakes it for a reboot in the middle of its session.
        """
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        firmware = open_firmware(
            self.interpreter,
            self._key,
            heartbeat_timeout_ms=self._hb_timeout,
            max_pulse_ms=self._max_pulse,
        )
        self._master, self._slave, self.port = open_raw_pty()
        self._stop.clear()
        with self._lock:
            self._firmware = firmware
            self.boots += 1
            self._write(firmware.boot(ResetCause.POWER_ON))
        self._thread = threading.Thread(target=self._run, name="gate-mcu-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, the firmware and close the pty (the host sees the port vanish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        close_fds((self._master, self._slave))
        self._master = self._slave = None
        with self._lock:
            if self._firmware is not None:
                self._firmware.close()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def firmware(self) -> SimulatedFirmware:
        if self._firmware is None:
            raise RuntimeError("simulator not started")
        return self._firmware

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            self._serve()
        except SimulatorError as exc:
            # The interpreter died or hung: the line goes silent, so the host sees the
            # link drop and fails secure, as it would with a dead MCU.
            self.failure = exc
            print(f"gate MCU simulator stopped: {exc}", file=sys.stderr)

    def _serve(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            master = self._master
            if master is None:
                return
            try:
                readable, _, _ = select.select([master], [], [], self._tick_interval)
            except (OSError, ValueError):
                return
            if readable:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError as e:  # EIO while no slave side is open
                    if e.errno != errno.EIO:
                        return
                    data = b""
                    time.sleep(self._tick_interval)
                if data:
                    self._on_bytes(data)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self._tick_interval
                with self._lock:
                    self._write(self.firmware.tick())

    def _on_bytes(self, data: bytes) -> None:
        with self._lock:
            if time.monotonic() < self._paused_until:
                return  # cable cut: incoming bytes are lost
            self._rx += data
            while True:
                idx = self._rx.find(b"\x00")
                if idx < 0:
                    break
                piece = bytes(self._rx[: idx + 1])
                del self._rx[: idx + 1]
                if len(piece) > 1:
                    self.frames_received += 1
                    if self._drop_in > 0:
                        self._drop_in -= 1
                        self.frames_dropped += 1
                        continue
                    if self._corrupt_in > 0:
                        self._corrupt_in -= 1
                        self.frames_corrupted += 1
                        # Byte 1 is the first data byte (the version): flipping a
                        # bit there is a single-bit error the CRC always detects.
                        flipped = bytearray(piece)
                        flipped[1] ^= 0x01  # 2 -> 3: never a zero byte
                        piece = bytes(flipped)
                reply = self.firmware.feed(piece)
                if reply and self._drop_out > 0:
                    self._drop_out -= 1
                    self.replies_dropped += 1
                    continue
                self._write(reply)

    def _write(self, data: bytes) -> None:
        """Non-blocking write: if nobody drains the pty, output is lost like on a UART."""
        if not data or self._master is None:
            return
        if time.monotonic() < self._paused_until:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except (BlockingIOError, OSError):
                return
            view = view[n:]

    # ---------------------------------------------------------- physical world

    def press_opt_out(self) -> None:
        """Passenger presses the opt-out button."""
        with self._lock:
            self._write(self.firmware.press_opt_out())

    def set_door(self, open_: bool) -> None:
        """Door sensor reports the barrier open/closed."""
        with self._lock:
            self._write(self.firmware.set_door(open_))

    def reboot(self, reset_cause: int = ResetCause.WATCHDOG) -> None:
        """MCU resets: RAM state is lost, relay closed, a new BOOT is sent."""
        with self._lock:
            self._rx = bytearray()
            self.boots += 1
            self._write(self.firmware.boot(reset_cause))

    # --------------------------------------------------------- fault injection

    def drop_next(self, n: int = 1) -> None:
        """Lose the next ``n`` frames coming from the host."""
        with self._lock:
            self._drop_in += n

    def corrupt_next(self, n: int = 1) -> None:
        """Flip one bit in each of the next ``n`` frames coming from the host."""
        with self._lock:
            self._corrupt_in += n

    def drop_next_reply(self, n: int = 1) -> None:
        """Lose the replies (ACK, STATUS) to the next ``n`` processed host frames."""
        with self._lock:
            self._drop_out += n

    def pause_link(self, seconds: float) -> None:
        """Cut the line in both directions for ``seconds`` (firmware keeps running)."""
        with self._lock:
            self._paused_until = time.monotonic() + seconds

    # ------------------------------------------------------- observable state

    @property
    def relay_open(self) -> bool:
        with self._lock:
            return self.firmware.state.relay_open

    @property
    def indicator(self) -> int:
        with self._lock:
            return self.firmware.state.indicator

    @property
    def relay_pulses(self) -> list[int]:
        """Durations (ms, after capping) of every accepted relay pulse."""
        with self._lock:
            return list(self.firmware.outputs.relay_pulses)

    @property
    def relay_history(self) -> list[bool]:
        """Every relay transition (True = opened, False = closed), oldest first."""
        with self._lock:
            return list(self.firmware.outputs.relay_history)

    @property
    def buzzes(self) -> list[int]:
        with self._lock:
            return list(self.firmware.outputs.buzzes)

    @property
    def last_counter(self) -> int:
        with self._lock:
            return self.firmware.state.last_counter

    @property
    def epoch(self) -> int:
        """The relay counter's epoch (NEW_EPOCH moves it on, the counter back to 0)."""
        with self._lock:
            return self.firmware.state.epoch

    @property
    def session(self) -> bool:
        """True while the firmware considers a host session established."""
        with self._lock:
            return self.firmware.state.session

    @property
    def rx_errors(self) -> int:
        """Frames the firmware's decoder rejected (bad CRC, COBS, length...)."""
        with self._lock:
            return self.firmware.state.rx_errors

    @property
    def duplicates(self) -> int:
        """Retransmitted commands that were re-ACKed without re-executing."""
        with self._lock:
            return self.firmware.state.duplicates


def _relay_key() -> bytes | None:
    """``GATE_RELAY_KEY`` (hex), or the development key with a warning; None if bad."""
    key_hex = os.environ.get("GATE_RELAY_KEY")
    if not key_hex:
        print(
            f"WARNING: GATE_RELAY_KEY not set; using the insecure development key {DEV_KEY.hex()}",
            file=sys.stderr,
        )
        return DEV_KEY
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        print("GATE_RELAY_KEY is not valid hex", file=sys.stderr)
        return None
    if len(key) < 16:
        print("GATE_RELAY_KEY must be at least 16 bytes (32 hex digits)", file=sys.stderr)
        return None
    return key


REPORT_S = 0.01  # relay and indicator changes are printed within this (pulses are timed)


def main(argv: list[str] | None = None) -> int:
    """Print the pty path, then each relay or indicator change, until Ctrl-C; SIGUSR1
    reboots the MCU as its watchdog would (RAM lost, relay closed, a new BOOT)."""
    parser = argparse.ArgumentParser(
        prog="python -m firmware_bridge.simulator",
        description="A simulated gate MCU on a pseudo-terminal; prints the port, then a line"
        " per relay or indicator change. The relay key is read from GATE_RELAY_KEY (hex);"
        " SIGUSR1 reboots the MCU (a watchdog reset).",
    )
    parser.add_argument(
        "--interpreter",
        choices=INTERPRETERS,
        default="cpython",
        help="run the firmware on CPython (fast, default) or on MicroPython (webassembly)",
    )
    args = parser.parse_args(argv)
    key = _relay_key()
    if key is None:
        return 2
    try:
        sim = Simulator(key, interpreter=args.interpreter).start()
    except SimulatorError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGUSR1, lambda *_: sim.reboot(ResetCause.WATCHDOG))
    try:
        print(sim.port, flush=True)
        last = None
        while sim.failure is None:
            state = (sim.relay_open, sim.indicator)
            if state != last:
                relay = "OPEN" if state[0] else "closed"
                print(f"relay={relay} indicator={Indicator.name(state[1])}", flush=True)
                last = state
            time.sleep(REPORT_S)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0 if sim.failure is None else 1


__all__ = ["DEV_KEY", "REPORT_S", "Simulator", "main"]

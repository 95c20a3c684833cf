"""Gate MCU simulator: the reference FirmwareCore behind a real pseudo-terminal.

The host driver opens :attr:`Simulator.port` with pyserial exactly as it would
open the MCU's UART, so tests exercise the real serial stack.  Fault injection
(dropped / corrupted frames, link pause, reboot) lets tests prove the
retransmission and fail-secure paths.

Run ``python -m firmware_bridge.simulator`` to get a port for manual testing.
"""

import contextlib
import errno
import os
import select
import sys
import threading
import time
import tty
from types import TracebackType

from firmware_bridge.mcu.firmware import FirmwareCore
from firmware_bridge.protocol import Indicator, ResetCause

# Development key only: the simulator prints a warning when it falls back to it.
DEV_KEY = b"gate-dev-key-NOT-FOR-PRODUCTION!"


class SimHal:
    """In-memory hardware: records relay/indicator/buzzer and persists the counter."""

    def __init__(self) -> None:
        self.relay_open = False
        self.indicator_pattern = Indicator.OUT_OF_SERVICE
        self.buzzes: list[int] = []
        self.relay_pulses: list[int] = []
        self.relay_history: list[bool] = []  # every relay transition, in order
        self.stored_counter = 0  # survives reboot(), like flash

    def relay(self, open_: bool) -> None:
        if bool(open_) != self.relay_open:
            self.relay_history.append(bool(open_))
        self.relay_open = bool(open_)

    def indicator(self, pattern: int) -> None:
        self.indicator_pattern = pattern

    def buzzer(self, ms: int) -> None:
        self.buzzes.append(ms)

    def now_ms(self) -> int:
        return int(time.monotonic() * 1000)

    def load_counter(self) -> int:
        return self.stored_counter

    def store_counter(self, counter: int) -> None:
        self.stored_counter = counter

    def on_pulse(self, duration_ms: int) -> None:
        self.relay_pulses.append(duration_ms)


class Simulator:
    """FirmwareCore on a pty master, serviced by a background thread. Thread-safe."""

    def __init__(
        self,
        hmac_key: bytes,
        *,
        heartbeat_timeout_ms: int = 1000,
        max_pulse_ms: int = 5000,
        tick_interval: float = 0.01,
    ) -> None:
        self._key = bytes(hmac_key)
        self._hb_timeout = heartbeat_timeout_ms
        self._max_pulse = max_pulse_ms
        self._tick_interval = tick_interval
        self._lock = threading.RLock()
        self._hal = SimHal()
        self._core = self._new_core()
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
        self.rx_errors_before_reboot = 0

    def _new_core(self) -> FirmwareCore:
        return FirmwareCore(
            self._hal,
            self._key,
            heartbeat_timeout_ms=self._hb_timeout,
            max_pulse_ms=self._max_pulse,
        )

    # --------------------------------------------------------------- lifecycle

    def start(self) -> "Simulator":
        """Open the pty, boot the firmware and start servicing the line."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a plain 8-bit line
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._stop.clear()
        with self._lock:
            self.boots += 1
            self._write(self._core.boot(ResetCause.POWER_ON))
        self._thread = threading.Thread(target=self._run, name="gate-mcu-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the pty (the host sees the port vanish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
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
                    self._write(self._core.tick())

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
                        flipped[1] ^= 0x02
                        piece = bytes(flipped)
                reply = self._core.feed(piece)
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
            self._write(self._core.press_opt_out())

    def set_door(self, open_: bool) -> None:
        """Door sensor reports the barrier open/closed."""
        with self._lock:
            self._write(self._core.set_door(open_))

    def reboot(self, reset_cause: int = ResetCause.WATCHDOG) -> None:
        """MCU resets: RAM state is lost, relay closed, a new BOOT is sent."""
        with self._lock:
            self.rx_errors_before_reboot += self._core.decoder.dropped
            self._core = self._new_core()
            self._rx = bytearray()
            self.boots += 1
            self._write(self._core.boot(reset_cause))

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
            return self._hal.relay_open

    @property
    def indicator(self) -> int:
        with self._lock:
            return self._hal.indicator_pattern

    @property
    def relay_pulses(self) -> list[int]:
        """Durations (ms, after capping) of every accepted relay pulse."""
        with self._lock:
            return list(self._hal.relay_pulses)

    @property
    def relay_history(self) -> list[bool]:
        """Every relay transition (True = opened, False = closed), oldest first."""
        with self._lock:
            return list(self._hal.relay_history)

    @property
    def buzzes(self) -> list[int]:
        with self._lock:
            return list(self._hal.buzzes)

    @property
    def last_counter(self) -> int:
        with self._lock:
            return self._core.last_counter

    @property
    def session(self) -> bool:
        """True while the firmware considers a host session established."""
        with self._lock:
            return self._core.session

    @property
    def rx_errors(self) -> int:
        """Frames the firmware's decoder rejected (bad CRC, COBS, length...)."""
        with self._lock:
            return self.rx_errors_before_reboot + self._core.decoder.dropped

    @property
    def duplicates(self) -> int:
        """Retransmitted commands that were re-ACKed without re-executing."""
        with self._lock:
            return self._core.duplicates


def main() -> int:
    """Print the pty path and serve it until Ctrl-C."""
    key_hex = os.environ.get("GATE_RELAY_KEY")
    if key_hex:
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            print("GATE_RELAY_KEY is not valid hex", file=sys.stderr)
            return 2
        if len(key) < 16:
            print("GATE_RELAY_KEY must be at least 16 bytes (32 hex digits)", file=sys.stderr)
            return 2
    else:
        key = DEV_KEY
        print(
            f"WARNING: GATE_RELAY_KEY not set; using the insecure development key {DEV_KEY.hex()}",
            file=sys.stderr,
        )
    sim = Simulator(key)
    with sim:
        print(sim.port, flush=True)
        last = None
        try:
            while True:
                state = (sim.relay_open, sim.indicator)
                if state != last:
                    relay = "OPEN" if state[0] else "closed"
                    print(f"relay={relay} indicator={Indicator.name(state[1])}", flush=True)
                    last = state
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
    return 0


__all__ = ["DEV_KEY", "SimHal", "Simulator", "main"]

"""Runs inside MicroPython: the simulated board around the unchanged firmware core.

Loaded by ``micropython_runner.mjs`` next to the firmware modules. The host side
(``micropython_process.MicroPythonFirmware``) sends one request line at a time and gets
one JSON line back; nothing else crosses between the interpreters, so every frame the
firmware sees and every byte it answers goes through this one function, :func:`handle`.

Requests::

    init <json {key, heartbeat_timeout_ms, max_pulse_ms, manual_clock, entropy}>
    boot <reset cause>        power-up or reset: new FirmwareCore, RAM state lost
    feed <hex>                bytes received on the UART
    tick <ms>                 housekeeping; with the manual clock, first advance it by ms
    opt_out | door <0|1>      the physical inputs

Answer: ``{"tx": hex to transmit, "st": [relay_open, indicator, session, last_counter,
rx_errors, duplicates, door_open, epoch], "ev": [[kind, value], ...]}`` or
``{"error": text}``.

The relay counter and its epoch are kept by the board code's own ``CounterStore`` in the
interpreter's file system (``/flash``), and time comes from ``TicksClock`` over
``time.ticks_ms``, so both run on MicroPython exactly as on the Pico. The webassembly
port has no ``os.urandom``: the board's random source is SHA-256 over ``entropy`` (hex,
from the host at ``init``) and a draw number, the same as the CPython board's
(``backends.seeded_random_bytes``), so a manual-clock run draws the same session ids
on both interpreters. No type hints here: MicroPython has no ``typing`` module.
"""

import hashlib
import json
import struct

from firmware_bridge.mcu.firmware import FirmwareCore
from firmware_bridge.mcu.pico_main import CounterStore, TicksClock

FLASH_DIR = "/flash/"


class ManualClock:
    """Milliseconds that move only when the host says so (deterministic tests, fuzzing)."""

    def __init__(self):
        self.now = 1_000_000

    def __call__(self):
        return self.now


class BoardHal:
    """Relay, indicator and buzzer as recorded events; the counter on the file system."""

    def __init__(self, clock, entropy):
        self.now_ms = clock
        self.entropy = entropy
        self.draws = 0
        self.relay_open = False
        self.pattern = 5  # OUT_OF_SERVICE until the core says otherwise
        self.events = []
        try:
            import os

            os.mkdir(FLASH_DIR.rstrip("/"))
        except OSError:
            pass  # already there
        self.store = CounterStore(FLASH_DIR)

    def relay(self, open_):
        open_ = bool(open_)
        if open_ != self.relay_open:
            self.events.append(["relay", open_])
        self.relay_open = open_

    def indicator(self, pattern):
        self.pattern = pattern

    def buzzer(self, ms):
        self.events.append(["buzz", ms])

    def on_pulse(self, duration_ms):
        self.events.append(["pulse", duration_ms])

    def random_bytes(self, n):
        self.draws += 1
        return hashlib.sha256(self.entropy + struct.pack(">I", self.draws)).digest()[:n]

    def load_counter(self):
        return self.store.load()

    def store_counter(self, epoch, counter):
        self.store.store(epoch, counter)


class Board:
    """One simulated MCU: the core, its HAL and what survives a reset."""

    def __init__(self, options):
        self.key = bytes.fromhex(options["key"])
        self.heartbeat_timeout_ms = options["heartbeat_timeout_ms"]
        self.max_pulse_ms = options["max_pulse_ms"]
        self.clock = ManualClock() if options["manual_clock"] else TicksClock()
        self.manual = bool(options["manual_clock"])
        self.hal = BoardHal(self.clock, bytes.fromhex(options["entropy"]))
        self.core = self.new_core()  # checks the key now, as the board does at start
        self.rx_errors_before_reset = 0

    def new_core(self):
        return FirmwareCore(
            self.hal,
            self.key,
            heartbeat_timeout_ms=self.heartbeat_timeout_ms,
            max_pulse_ms=self.max_pulse_ms,
        )

    def boot(self, cause):
        self.rx_errors_before_reset += self.core.decoder.dropped
        self.core = self.new_core()
        return self.core.boot(cause)

    def tick(self, advance_ms):
        if advance_ms:
            if not self.manual:
                raise ValueError("the clock only advances by itself")
            self.clock.now += advance_ms
        return self.core.tick()

    def answer(self, tx):
        core = self.core
        events = self.hal.events
        self.hal.events = []
        state = [
            self.hal.relay_open,
            self.hal.pattern,
            core.session,
            core.last_counter,
            self.rx_errors_before_reset + core.decoder.dropped,
            core.duplicates,
            core.door_open,
            core.epoch,
        ]
        return json.dumps({"tx": tx.hex(), "st": state, "ev": events})


_board = None


def handle(line):
    """One request line -> one JSON answer line (see the module docstring)."""
    global _board
    op, _, arg = line.strip().partition(" ")
    try:
        if op == "init":
            _board = Board(json.loads(arg))
            return json.dumps({"ok": True})
        if _board is None:
            return json.dumps({"error": "not initialised"})
        if op == "boot":
            tx = _board.boot(int(arg))
        elif op == "feed":
            tx = _board.core.feed(bytes.fromhex(arg))
        elif op == "tick":
            tx = _board.tick(int(arg or "0"))
        elif op == "opt_out":
            tx = _board.core.press_opt_out()
        elif op == "door":
            tx = _board.core.set_door(arg == "1")
        else:
            return json.dumps({"error": "unknown request " + op})
    except Exception as exc:  # the firmware failed: the host sees it as a crash
        if _board is not None:
            _board.hal.relay(False)  # as pico_main's loop does before the watchdog resets
        return json.dumps({"error": type(exc).__name__ + ": " + str(exc)})
    return _board.answer(tx)


__all__ = ["FLASH_DIR", "Board", "BoardHal", "ManualClock", "handle"]

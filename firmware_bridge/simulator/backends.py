"""The simulated MCU behind the pseudo-terminal, on either interpreter.

A backend is the firmware core plus the board around it, driven by calls that each
return the bytes the MCU transmits: :meth:`SimulatedFirmware.boot`, ``feed``, ``tick``,
``press_opt_out`` and ``set_door``. After every call :attr:`state` says what the board
shows and :attr:`outputs` holds what it did (relay transitions, accepted pulses,
buzzer chirps), so the simulator, the fuzzer and the conformance tests read the same
record whichever interpreter ran the firmware:

* ``cpython``: :class:`~firmware_bridge.simulator.in_process.InProcessFirmware`, the core
  in this process (fast; the default);
* ``micropython``: :class:`~firmware_bridge.simulator.micropython_process.MicroPythonFirmware`,
  the same unchanged modules inside MicroPython's webassembly port under ``node``.

With ``manual_clock=True`` time stands still until ``tick(advance_ms)`` moves it, for
deterministic tests and fuzzing, and the board's random source (the session ids it draws
at HELLO) is a fixed sequence, the same on both interpreters; otherwise the board's own
clock runs and its randomness is random.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Protocol

from firmware_bridge.protocol import Indicator

INTERPRETERS = ("cpython", "micropython")

# With the manual clock the random source is deterministic too, so a seeded fuzz run
# replays byte for byte (and the MicroPython board, micropython_glue, draws the same).
DETERMINISTIC_SEED = b"simulated-board-rng"


def seeded_random_bytes(seed: bytes, draw: int, n: int) -> bytes:
    """The ``draw``-th output of the simulated boards' random source (n <= 32)."""
    return hashlib.sha256(seed + struct.pack(">I", draw)).digest()[:n]


@dataclass(frozen=True)
class FirmwareState:
    """What the board shows after the last call."""

    relay_open: bool = False
    indicator: int = Indicator.OUT_OF_SERVICE
    session: bool = False
    last_counter: int = 0
    epoch: int = 0  # the relay counter's epoch
    rx_errors: int = 0  # frames the decoder rejected, over every boot
    duplicates: int = 0  # retransmissions re-ACKed without executing (this boot)
    door_open: bool = False


@dataclass
class FirmwareOutputs:
    """What the board did, oldest first; survives reboots (it is the outside world)."""

    relay_history: list[bool] = field(default_factory=list)  # True = opened
    relay_pulses: list[int] = field(default_factory=list)  # ms, after capping
    buzzes: list[int] = field(default_factory=list)  # ms

    @property
    def relay_openings(self) -> int:
        return sum(1 for opened in self.relay_history if opened)


class SimulatedFirmware(Protocol):
    """The firmware core and its board, as the simulator drives it."""

    interpreter: str
    state: FirmwareState
    outputs: FirmwareOutputs

    def boot(self, reset_cause: int) -> bytes:
        """Power-up or reset: RAM state lost, the counter kept; returns BOOT."""
        ...

    def feed(self, data: bytes) -> bytes: ...

    def tick(self, advance_ms: int = 0) -> bytes: ...

    def press_opt_out(self) -> bytes: ...

    def set_door(self, open_: bool) -> bytes: ...

    def close(self) -> None: ...


__all__ = [
    "DETERMINISTIC_SEED",
    "INTERPRETERS",
    "FirmwareOutputs",
    "FirmwareState",
    "SimulatedFirmware",
    "seeded_random_bytes",
]

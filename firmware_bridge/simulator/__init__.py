"""The gate MCU's firmware behind a pseudo-terminal, for tests, the demo and benches.

* ``pty``: :class:`Simulator`, the pty, the line's fault injection and what the board
  shows; ``python -m firmware_bridge.simulator [--interpreter micropython]``;
* ``backends``: the firmware and its board as the simulator drives them, on either
  interpreter (:func:`open_firmware`, :data:`INTERPRETERS`);
* ``in_process``: the CPython backend; ``micropython_process``, ``micropython_glue`` and
  ``micropython_runner.mjs``: the MicroPython backend (the real interpreter, compiled to
  webassembly, under ``node``); ``micropython_runtime``: its pinned files and the
  firmware modules it loads;
* ``line_tap``: :class:`LineTap`, an attacker between the host and the MCU (records,
  rewrites and injects frames) for the tests and benches of the link's authentication.
"""

from firmware_bridge.simulator.backends import INTERPRETERS
from firmware_bridge.simulator.interpreters import open_firmware
from firmware_bridge.simulator.line_tap import LineTap
from firmware_bridge.simulator.micropython_runtime import SimulatorError
from firmware_bridge.simulator.pty import Simulator

__all__ = ["INTERPRETERS", "LineTap", "Simulator", "SimulatorError", "open_firmware"]

"""An emulated Raspberry Pi Pico behind a pseudo-terminal, for deploy tests and try-outs.

:class:`EmulatedPico` runs ``board.mjs`` (MicroPython's webassembly port with a REPL,
a flash folder, the watchdog and a ``machine`` module) on the master side of a pty and
keeps the slave open, so ``mpremote connect <port>`` and then the host driver talk to it
exactly as to a Pico's USB serial port. It lives in testbed because it is a test rig: its
``machine`` is a stand-in (the firmware is checked against the real rp2 API by
``make firmware-check``), and nothing in the field uses it.

``python -m testbed.emulated_pico --flash DIR`` prints the port and serves it, for
trying ``gatectl firmware deploy`` by hand.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import TracebackType

from firmware_bridge.simulator.micropython_runtime import node_executable, verified_runtime
from firmware_bridge.simulator.ptys import close_fds, open_raw_pty

HERE = Path(__file__).resolve().parent
BOARD = HERE / "board.mjs"


class EmulatedPico:
    """The board on ``port``, its flash kept in ``flash_dir``. ``inputs`` maps GPIO ->
    the level its inputs read (``{22: 0}``: the SERVICE jumper on); :meth:`set_inputs`
    changes them while it runs (the firmware reads them when it sets a pin up)."""

    def __init__(self, flash_dir: Path, inputs: dict[int, int] | None = None) -> None:
        self.flash_dir = Path(flash_dir)
        self.port = ""
        self.set_inputs(inputs or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._master: int | None = None
        self._slave: int | None = None

    def set_inputs(self, levels: dict[int, int]) -> None:
        """Input levels from now on (a jumper put on or taken off, a button held)."""
        inputs = self.flash_dir.with_name(self.flash_dir.name + ".inputs")
        inputs.parent.mkdir(parents=True, exist_ok=True)
        inputs.write_text(json.dumps({str(gpio): level for gpio, level in levels.items()}))

    def input_reads(self, gpio: int) -> int:
        """How often the firmware has set ``gpio`` up as an input (read its level)."""
        reads = self.flash_dir.with_name(self.flash_dir.name + ".reads")
        if not reads.exists():
            return 0
        return sum(1 for line in reads.read_text().split() if int(line) == gpio)

    def wait_for_input_read(self, gpio: int, after: int, timeout: float = 20.0) -> bool:
        """Wait until the firmware has read ``gpio`` more than ``after`` times: a jumper
        read only at power-up may come off once this is True (a busy machine boots slowly)."""
        deadline = time.monotonic() + timeout
        while self.input_reads(gpio) <= after:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    @property
    def gpio_log(self) -> Path:
        """Every change of an output pin, one ``"<gpio> <level>"`` line each."""
        return self.flash_dir.with_name(self.flash_dir.name + ".gpio")

    def output_history(self, gpio: int) -> list[int]:
        """Levels ``gpio`` was driven to since the board was first started, in order."""
        if not self.gpio_log.exists():
            return []
        levels = []
        for line in self.gpio_log.read_text().splitlines():
            pin, level = line.split()
            if int(pin) == gpio:
                levels.append(int(level))
        return levels

    def start(self) -> EmulatedPico:
        # The slave stays open here, so the board's side never sees EIO between clients.
        self._master, self._slave, self.port = open_raw_pty()
        self._power_on()
        return self

    def _power_on(self) -> None:
        assert self._master is not None
        command = [node_executable(), str(BOARD), "--runtime", str(verified_runtime())]
        command += ["--fd", str(self._master), "--flash", str(self.flash_dir)]
        self._proc = subprocess.Popen(command, pass_fds=(self._master,), stdin=subprocess.DEVNULL)
        time.sleep(0.3)  # boot; mpremote retries its first Ctrl-C anyway

    def power_cycle(self) -> None:
        """Cut the power (the flash keeps what was written) and power up again."""
        self._power_off()
        self._power_on()

    def _power_off(self) -> None:
        proc = self._proc
        if proc is None:
            return
        proc.terminate()  # our own child, by its handle
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
        self._proc = None

    def stop(self) -> None:
        self._power_off()
        close_fds((self._master, self._slave))
        self._master = self._slave = None

    def __enter__(self) -> EmulatedPico:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["BOARD", "HERE", "EmulatedPico"]

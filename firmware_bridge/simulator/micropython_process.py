"""The firmware core inside the real MicroPython interpreter, in a ``node`` child process.

:class:`MicroPythonProcess` starts ``micropython_runner.mjs`` on the pinned webassembly
port with the firmware modules copied in, and exchanges one line per request with the
module it serves. :class:`MicroPythonFirmware` is the simulator backend on top of it:
each call sends one request to ``micropython_glue.handle`` and mirrors the answer
(bytes to transmit, board state, events) into :attr:`state` and :attr:`outputs`.

The relay key reaches the interpreter on its standard input, never on a command line.
A request that is not answered within ``answer_timeout`` seconds ends the child and
raises :class:`SimulatorError`, so a wedged interpreter cannot hang a test or the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import time
from pathlib import Path

from firmware_bridge.simulator.backends import (
    DETERMINISTIC_SEED,
    FirmwareOutputs,
    FirmwareState,
)
from firmware_bridge.simulator.micropython_runtime import (
    SimulatorError,
    firmware_files,
    node_executable,
    verified_runtime,
)

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "micropython_runner.mjs"
GLUE = HERE / "micropython_glue.py"


class MicroPythonProcess:
    """``module.handle(line)`` inside MicroPython, one line in and one line out."""

    def __init__(
        self,
        module: Path,
        *,
        extra_files: tuple[tuple[Path, str], ...] = (),
        answer_timeout: float = 10.0,
    ) -> None:
        runtime = verified_runtime()
        files = [*firmware_files(), *extra_files, (module, "/" + module.name)]
        command = [node_executable(), str(RUNNER), "--runtime", str(runtime)]
        command += ["--module", module.stem]
        for host, inside in files:
            command += ["--file", f"{host}={inside}"]
        self.answer_timeout = answer_timeout
        try:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
            )
        except OSError as exc:
            raise SimulatorError(f"cannot start the MicroPython interpreter: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        os.set_blocking(self._stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout, selectors.EVENT_READ)
        self._pending = b""

    def request(self, line: str) -> str:
        """Send one request line; return its answer line (raises SimulatorError)."""
        if self._proc.poll() is not None:
            raise SimulatorError(f"MicroPython interpreter exited ({self._proc.returncode})")
        try:
            self._stdin.write(line.encode("ascii") + b"\n")
        except OSError as exc:
            self.close()
            raise SimulatorError(f"MicroPython interpreter went away: {exc}") from exc
        deadline = time.monotonic() + self.answer_timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                self._proc.kill()  # wedged: no grace period (our own child, by its handle)
                self.close()
                raise SimulatorError(
                    f"MicroPython interpreter did not answer within {self.answer_timeout:g} s"
                )
            chunk = self._stdout.read(65536)
            if chunk == b"":  # end of file: the interpreter died
                code = self._proc.wait()
                raise SimulatorError(f"MicroPython interpreter exited ({code})")
            if chunk:
                self._pending += chunk
        answer, _, self._pending = self._pending.partition(b"\n")
        return answer.decode("utf-8")

    def close(self) -> None:
        """Close its input (it exits by itself); kill it if it does not within 2 s."""
        proc = self._proc
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            proc.wait(timeout=2)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._stdout)
        self._selector.close()
        with contextlib.suppress(OSError):
            self._stdout.close()


class MicroPythonFirmware:
    """The simulator backend on MicroPython (see ``backends.SimulatedFirmware``)."""

    interpreter = "micropython"

    def __init__(
        self,
        hmac_key: bytes,
        *,
        heartbeat_timeout_ms: int = 1000,
        max_pulse_ms: int = 5000,
        manual_clock: bool = False,
    ) -> None:
        self.state = FirmwareState()
        self.outputs = FirmwareOutputs()
        self._process = MicroPythonProcess(GLUE)
        options = {
            "key": bytes(hmac_key).hex(),
            "heartbeat_timeout_ms": heartbeat_timeout_ms,
            "max_pulse_ms": max_pulse_ms,
            "manual_clock": manual_clock,
            # the board's random source (see micropython_glue): fixed with the manual clock
            "entropy": (DETERMINISTIC_SEED if manual_clock else os.urandom(32)).hex(),
        }
        try:
            self._call("init " + json.dumps(options))
        except BaseException:
            self.close()
            raise

    def _call(self, line: str) -> bytes:
        answer = json.loads(self._process.request(line))
        error = answer.get("error")
        if error is not None:
            kind, _, message = error.partition(": ")
            if kind == "ValueError":  # bad arguments, as FirmwareCore raises them on CPython
                raise ValueError(message)
            raise SimulatorError(f"firmware failed on MicroPython: {error}")
        if "st" in answer:
            relay, indicator, session, counter, rx_errors, duplicates, door, epoch = answer["st"]
            self.state = FirmwareState(
                relay_open=bool(relay),
                indicator=int(indicator),
                session=bool(session),
                last_counter=int(counter),
                rx_errors=int(rx_errors),
                duplicates=int(duplicates),
                door_open=bool(door),
                epoch=int(epoch),
            )
            for kind, value in answer["ev"]:
                if kind == "relay":
                    self.outputs.relay_history.append(bool(value))
                elif kind == "pulse":
                    self.outputs.relay_pulses.append(int(value))
                elif kind == "buzz":
                    self.outputs.buzzes.append(int(value))
        return bytes.fromhex(answer.get("tx", ""))

    def boot(self, reset_cause: int) -> bytes:
        return self._call(f"boot {int(reset_cause)}")

    def feed(self, data: bytes) -> bytes:
        return self._call("feed " + bytes(data).hex()) if data else b""

    def tick(self, advance_ms: int = 0) -> bytes:
        return self._call(f"tick {int(advance_ms)}")

    def press_opt_out(self) -> bytes:
        return self._call("opt_out")

    def set_door(self, open_: bool) -> bytes:
        return self._call("door 1" if open_ else "door 0")

    def close(self) -> None:
        self._process.close()


__all__ = ["GLUE", "HERE", "RUNNER", "MicroPythonFirmware", "MicroPythonProcess"]

"""The MicroPython interpreter as a part: pinned, checked at start, and never able to hang
or silently fail the host (real node, real webassembly port)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_bridge.host import GateLink, LinkState
from firmware_bridge.simulator import Simulator, SimulatorError, open_firmware
from firmware_bridge.simulator.micropython_process import MicroPythonProcess
from firmware_bridge.simulator.micropython_runtime import (
    RUNTIME_FILES,
    runtime_dir,
    verified_runtime,
)
from testbed.runs import wait_for

KEY = b"runtime-test-key-0123456789abcd!"
HERE = Path(__file__).parent


def test_missing_or_altered_runtime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match=r"missing.*make setup"):
        verified_runtime(tmp_path)
    for name in RUNTIME_FILES:
        shutil.copy(runtime_dir() / name, tmp_path / name)
    assert verified_runtime(tmp_path) == tmp_path
    with (tmp_path / "micropython.wasm").open("ab") as wasm:
        wasm.write(b"\x00")
    with pytest.raises(SimulatorError, match="altered"):
        verified_runtime(tmp_path)


def test_no_node_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_NODE", "/nonexistent/node")
    with pytest.raises(SimulatorError, match="cannot start the MicroPython interpreter"):
        open_firmware("micropython", KEY)


def test_unknown_interpreter_is_refused() -> None:
    with pytest.raises(ValueError, match="cpython, micropython"):
        Simulator(KEY, interpreter="jython")


@pytest.mark.micropython
def test_a_wedged_interpreter_is_ended_not_waited_for() -> None:
    process = MicroPythonProcess(HERE / "micropython_modules" / "wedged.py", answer_timeout=1.0)
    with pytest.raises(SimulatorError, match="did not answer within 1 s"):
        process.request("anything")
    assert process._proc.poll() is not None  # killed, not left spinning


@pytest.mark.micropython
def test_a_dead_interpreter_is_a_dead_mcu_to_the_host() -> None:
    """The interpreter dies mid-session: the simulator stops serving the line, and the
    host sees its link drop (and fails secure), as with a board that lost power."""
    with Simulator(KEY, interpreter="micropython") as sim:
        events: list = []
        link = GateLink(sim.port, KEY)
        link.on_event(events.append)
        link.open()
        try:
            sim.firmware._process._proc.kill()  # type: ignore[attr-defined]
            assert wait_for(lambda: sim.failure is not None, timeout=10)
            assert "exited" in str(sim.failure)
            assert wait_for(lambda: LinkState(False) in events, timeout=10)
            assert not link.link_up
        finally:
            link.close()


@pytest.mark.micropython
def test_module_entry_point_serves_a_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.simulator", "--interpreter", "micropython"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GATE_RELAY_KEY": KEY.hex()},
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/")
        link = GateLink(port, KEY).open()  # HELLO answered by the firmware on MicroPython
        try:
            assert link.request_status().last_counter == 0
        finally:
            link.close()
    finally:
        proc.terminate()  # our own child, by its handle
        proc.wait(timeout=10)

"""`python -m firmware_bridge.simulator`: the port, a line per relay or indicator change,
and SIGUSR1 reboots the MCU (what the fault bench's MCU-reboot row relies on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from firmware_bridge.host import GateLink
from firmware_bridge.protocol import Indicator

KEY = bytes(range(32))


def _line_with(proc: subprocess.Popen, text: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return line.strip()
    raise AssertionError(f"the simulator ended without printing {text!r}")


def test_changes_are_printed_and_sigusr1_reboots_the_mcu() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.simulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GATE_RELAY_KEY": KEY.hex()},
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        link = GateLink(port, KEY).open()
        try:
            link.set_indicator(Indicator.SEE_AGENT)
            assert _line_with(proc, "indicator=SEE_AGENT") == "relay=closed indicator=SEE_AGENT"
            proc.send_signal(signal.SIGUSR1)  # a watchdog reset: the MCU forgets its state
            assert _line_with(proc, "indicator=OFF") == "relay=closed indicator=OFF"
        finally:
            link.close()
    finally:
        proc.terminate()  # our own child, by its handle
        proc.wait(timeout=10)

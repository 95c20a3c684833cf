"""Ctrl-C in a long developer command is one line and exit 130, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.support import REPO


def test_ctrl_c_in_simulate(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "simulate", "--travellers", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    time.sleep(6)  # well into the run: the matcher, the firmware and the gate are up
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "gatectl simulate: interrupted"

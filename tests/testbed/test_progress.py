"""Long commands show a progress bar to a person at a terminal, on stderr, and none with
``--json``: real ``gatectl`` processes with stderr on a pseudo-terminal and stdout on a
pipe, as ``gatectl simulate --json | jq`` runs in a technician's shell."""

from __future__ import annotations

import json
import sys

from tests.support import run_with_stderr_on_a_terminal

SIMULATE = [sys.executable, "-m", "appliance", "simulate", "--travellers", "3"]


def test_simulate_draws_a_bar_on_the_terminal_and_keeps_stdout_clean():
    run = run_with_stderr_on_a_terminal(SIMULATE)
    assert run.returncode == 0, run.terminal[-2000:]
    assert "boarding:" in run.terminal and "/3 [" in run.terminal, run.terminal
    lines = run.stdout.splitlines()
    assert [line.split(".")[0].strip() for line in lines[:3]] == ["1", "2", "3"]
    assert lines[-1].startswith("summary: ") and "\r" not in run.stdout


def test_simulate_with_json_draws_no_bar_and_ends_with_json():
    run = run_with_stderr_on_a_terminal([*SIMULATE, "--json"])
    assert run.returncode == 0, run.terminal[-2000:]
    assert "boarding" not in run.terminal and "\r" not in run.terminal, run.terminal
    assert json.loads(run.stdout.splitlines()[-1])["travellers"] == 3

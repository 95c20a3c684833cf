"""Work folders of the demo and the simulation, and a small poll helper they share."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from gate_contract.paths import data_dir

KEEP_RUNS = 5


def fresh_run_dir(kind: str, keep: int = KEEP_RUNS) -> Path:
    """A new folder ``<data dir>/<kind>-runs/<UTC time>-<pid>``; keeps the newest ``keep``."""
    if keep < 1:
        raise ValueError("keep must be at least 1 (the run being started)")
    runs = data_dir() / f"{kind}-runs"
    runs.mkdir(parents=True, exist_ok=True)
    while True:  # names sort by start time, so the oldest runs are the first ones
        now_ns = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 1_000_000_000))
        work = runs / f"{stamp}.{now_ns // 1000 % 1_000_000:06d}-{os.getpid()}"
        try:
            work.mkdir()
            break
        except FileExistsError:  # this process started another run in the same microsecond
            continue
    for old in sorted(runs.iterdir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return work


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its final value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


__all__ = ["KEEP_RUNS", "fresh_run_dir", "wait_for"]

"""Soak: travellers through the real service for a while, its resources sampled.

The rig of the fault bench (``testbed.bench.faults.Rig``: ``gate-matcher serve``, the
simulator and ``gatectl run`` in their own processes, the MJPEG camera), without strace.
An enrolled traveller steps up, then the lane clears, over and over: the first visit is
a grant, the later ones are referred as already boarded, so every cycle runs the whole
path (capture, seal, intent, verify, purge, record, receipt). Every ``interval_s`` the
appliance's resident memory, open files and threads (from ``/proc``) and the ledger's
size are sampled; ``bench_soak`` gives each one's least-squares slope per hour over the
samples after the first quarter (start-up growth left out) and its growth over that span.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from appliance.custody.ledger import list_segments
from gate_contract.progress import SILENT, Progress
from testbed.bench.faults import LANE_CLEAR_S, BenchInputs, Rig, prepare
from testbed.runs import wait_for

SAMPLE_S = 2.0
VISIT_S = 3.0


def _proc(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return {
        "rss_mb": int(fields["VmRSS"][0]) / 1024,
        "threads": float(fields["Threads"][0]),
        "open_files": float(len(list(Path(f"/proc/{pid}/fd").iterdir()))),
    }


def _slope_per_hour(times: list[float], values: list[float]) -> float:
    n = len(times)
    if n < 2:
        return 0.0
    mean_t, mean_v = sum(times) / n, sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return (
        sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread * 3600
    )


def bench_soak(
    duration_s: float = 600.0,
    interval_s: float = SAMPLE_S,
    inputs: BenchInputs | None = None,
    progress: Progress = SILENT,
) -> dict:
    """Soak for ``duration_s``; ``inputs`` (the fault bench's) saves a second enrolment."""
    root = Path(tempfile.mkdtemp(prefix="gate-soak-"))
    rig: Rig | None = None
    try:
        inputs = inputs or prepare(root, traced=False)
        work = root / "soak"
        work.mkdir()
        rig = Rig(work, inputs.db, inputs.pki, inputs.photos)
        rig.start_matcher()
        if not wait_for(rig.matcher_listening, 120.0, 0.2):
            raise RuntimeError("gate-matcher serve never listened")
        rig.start_simulator()
        rig.start_appliance(traced=False)
        if not rig.wait_serving():
            raise RuntimeError("the service never became ready")
        stop = threading.Event()

        def visits() -> None:
            while not stop.is_set():
                rig.present("obama")
                stop.wait(VISIT_S)
                rig.present("nobody")
                stop.wait(LANE_CLEAR_S + 0.5)

        walker = threading.Thread(target=visits, daemon=True)
        walker.start()
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        with progress.timed("soak", duration_s) as bar:
            while time.monotonic() - started < duration_s:
                pid = rig.appliance_pid()
                if pid is None:
                    break
                sample = {"t": time.monotonic() - started, **_proc(pid)}
                sample["ledger_kb"] = (
                    sum(p.stat().st_size for _, p in list_segments(rig.ledger)) / 1024
                )
                samples.append(sample)
                bar.set_postfix(rss_mb=round(sample["rss_mb"], 1), refresh=False)
                bar.update(min(duration_s, sample["t"]) - bar.n)
                time.sleep(interval_s)
        stop.set()
        walker.join(10)
        status = rig.read_status()
        survived = rig.appliance_pid() is not None
    finally:
        if rig is not None:
            rig.stop()
        shutil.rmtree(root, ignore_errors=True)
    steady = samples[len(samples) // 4 :]
    times = [s["t"] for s in steady]
    result: dict = {
        "duration_s": round(samples[-1]["t"], 1) if samples else 0.0,
        "samples": len(samples),
        "service_survived": survived,
        "served": status.get("counters", {}).get("served"),
        "granted": status.get("counters", {}).get("granted"),
    }
    for key in ("rss_mb", "open_files", "threads", "ledger_kb"):
        values = [s[key] for s in steady]
        result[f"{key}_per_hour"] = round(_slope_per_hour(times, values), 2)
        result[f"{key}_start"] = round(values[0], 1) if values else None
        result[f"{key}_end"] = round(values[-1], 1) if values else None
    return result


__all__ = ["SAMPLE_S", "VISIT_S", "bench_soak"]

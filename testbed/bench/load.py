"""Load: K gates at once against one reference matching service on this machine.

``gate-matcher serve`` runs in its own process (the fault bench's rig); each gate is the
appliance's own pipeline in a thread of this process: a replay camera of an enrolled
traveller, a simulated MCU on a pty (``firmware_bridge.simulator``), a ``GateController``,
its own device certificate and ``MatchingClient``. Every gate boards the traveller over
and over (the first visit is a grant, the later ones are referred as already boarded:
the same path, capture to gate). For each K the figures are verifies per second, the
verify latency (sealed frame sent -> verdict) and face-to-gate latency p50/p99, and
``errors`` (a traveller referred for a fault instead of a verdict). ``knee_gates`` is the
smallest K whose face-to-gate p99 crosses the 300 ms budget (None if none did).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from appliance.custody.ledger import PurgeLedger
from appliance.gate.machine import GateController
from appliance.matching.client import MatchingClient
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import ReplaySource
from appliance.vision.detectors import create_detector
from firmware_bridge.host import GateLink
from firmware_bridge.simulator import Simulator
from gate_contract.paths import data_dir
from gate_contract.progress import SILENT, Progress
from matching_service.dev_ca import issue_device
from testbed.bench.faults import Rig, prepare
from testbed.runs import wait_for
from testbed.testing import FLIGHT

BUDGET_MS = 300.0  # face in view -> gate, the design's budget
FAULT_EVENTS = frozenset({"matcher_unavailable", "verdict_timeout", "error"})


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _gate(target: str, pki, work: Path, index: int, photo: Path, until: float, out: list) -> None:
    device_id = f"gate-lax-{index:04d}"
    layout = issue_device(pki, work / device_id, device_id)
    key = os.urandom(32)
    simulator = Simulator(key).start()
    link = GateLink(simulator.port, key).open()
    gate = GateController(link, pulse_ms=100)
    client = MatchingClient(target, layout, device_id, deadline_s=5.0)
    try:
        gate.start()
        client.open_session(FLIGHT)
        pipeline = TravellerPipeline(
            create_detector(), client, gate, PurgeLedger(work / f"{device_id}.jsonl")
        )
        while time.monotonic() < until:
            gate.ready("next traveller")
            result = pipeline.process(ReplaySource([photo], canvas=(1280, 720), repeat=4))
            if result.frame_sent:
                out.append(result)
        wait_for(lambda: pipeline.receipts.owed == 0, 10.0)
    finally:
        client.close()
        gate.close()
        link.close()
        simulator.stop()


def _run(
    k: int, target: str, pki, work: Path, photo: Path, duration_s: float, progress: Progress
) -> dict:
    results: list = []
    until = time.monotonic() + duration_s
    threads = [
        threading.Thread(target=_gate, args=(target, pki, work, i, photo, until, results))
        for i in range(k)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    give_up = started + duration_s + 120
    with progress.timed(f"{k} gate(s)", duration_s) as bar:
        for thread in threads:
            while thread.is_alive() and time.monotonic() < give_up:
                thread.join(0.5)
                bar.set_postfix(verifies=len(results), refresh=False)
                bar.update(min(duration_s, time.monotonic() - started) - bar.n)
    elapsed = time.monotonic() - started
    verdicts = [r for r in results if r.event not in FAULT_EVENTS]
    # a traveller taken again was verified once per capture sent
    verify = [ms for r in verdicts for _, ms in r.earlier_timings]
    verify += [r.verify_ms for r in verdicts if r.verify_ms is not None]
    e2e = [r.e2e_ms for r in verdicts if r.e2e_ms is not None]
    return {
        "gates": k,
        "verifies": len(verify),
        "verifies_per_s": round(len(verify) / elapsed, 2),
        "verify_ms_p50": _percentile(verify, 0.5),
        "verify_ms_p99": _percentile(verify, 0.99),
        "face_to_gate_ms_p50": _percentile(e2e, 0.5),
        "face_to_gate_ms_p99": _percentile(e2e, 0.99),
        "errors": len(results) - len(verdicts),
    }


def bench_load(gates: list[int], duration_s: float = 30.0, progress: Progress = SILENT) -> dict:
    """Run each K in ``gates`` for ``duration_s``; one row per K and the knee."""
    root = Path(tempfile.mkdtemp(prefix="gate-load-"))
    rig: Rig | None = None
    try:
        inputs = prepare(root, traced=False)
        rig = Rig(root / "matcher", inputs.db, inputs.pki, inputs.photos)
        rig.start_matcher()
        if not wait_for(rig.matcher_listening, 120.0, 0.2):
            raise RuntimeError("gate-matcher serve never listened")
        from gate_contract.keys import PkiLayout

        pki = PkiLayout(inputs.pki)
        photo = data_dir() / "demo" / "obama2.jpg"
        rows = []
        for k in gates:
            work = root / f"k{k}"
            work.mkdir()
            target = f"localhost:{rig.matcher_port}"
            rows.append(_run(k, target, pki, work, photo, duration_s, progress))
    finally:
        if rig is not None:
            rig.stop()
        shutil.rmtree(root, ignore_errors=True)
    knee = next((r["gates"] for r in rows if (r["face_to_gate_ms_p99"] or 0) > BUDGET_MS), None)
    return {
        "duration_s": duration_s,
        "budget_ms": BUDGET_MS,
        "knee_gates": knee,
        "errors": sum(r["errors"] for r in rows),
        "rows": rows,
    }


__all__ = ["BUDGET_MS", "FAULT_EVENTS", "bench_load"]

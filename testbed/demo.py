"""`gatectl demo`: a boarding queue through the whole appliance, on real parts, offline.

It starts the reference matching service on loopback (mutual TLS), enrolls a demo
flight from document photos, runs the firmware simulator behind a pseudo-terminal,
and replays a scripted queue of travellers through the camera path. Every stage is the
production code; only the camera is a replay and the MCU a simulator.

With ``--screens`` the traveller display, the agent station and ``/metrics`` are served on
loopback while the queue runs (``testbed.demo_screens``): the replay is paced at 30 frames
a second, each outcome stays up for ``hold_s`` and the opt-out traveller waits for the
agent's release on the station (or ``agent_wait_s``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.custody.audit import default_key_path
from appliance.custody.ledger import PurgeLedger
from appliance.gate.flight import Flight
from appliance.gate.machine import GateController
from appliance.gate.outcome import TravellerOutcome
from appliance.gate.workflow import GateWorkflow
from appliance.matching.client import MatchingClient
from appliance.paths import demo_assets_dir
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import FrameSource, ReplaySource
from appliance.vision.detectors import create_detector
from appliance.vision.detectors.base import Detector
from firmware_bridge.host import GateLink
from firmware_bridge.simulator import Simulator, SimulatorError
from gate_contract.paths import data_dir
from matching_service.dev_ca import DEV_DEVICE_ID, create_dev_pki
from matching_service.gallery import Gallery, flight_key
from matching_service.recognizers import DEFAULT_RECOGNIZER, open_recognizer
from matching_service.server import service_from_pki, start_server
from testbed.runs import fresh_run_dir, wait_for
from testbed.scenes import empty_scene, traveller_scene
from testbed.write_audit import WriteAudit

FLIGHT = Flight("BA", "0283", "2026-11-25", "LAX", "B42")
CANVAS = (1280, 720)


@dataclass
class Traveller:
    """One entry of the scripted queue; ``source(fps)`` replays its scene (paced if given)."""

    label: str
    source: Callable[[float | None], FrameSource]
    opts_out: bool = False


@dataclass(frozen=True)
class ScreensOptions:
    port: int = 0
    hold_s: float = 3.0  # each outcome stays on the screens this long
    agent_wait_s: float = 30.0  # the opt-out traveller waits this long for the agent
    lead_in_s: float = 5.0  # time to open the pages before the first traveller
    fps: float = 30.0


def _empty_lane_video() -> Path:
    path = demo_assets_dir() / "scenes" / "empty-lane.avi"
    if not path.exists():
        empty_scene(path)
    return path


def _scene_videos() -> dict[str, Path]:
    """Make (once) the demo's camera scenes from the photos set-up fetched."""
    assets = demo_assets_dir()
    scenes = assets / "scenes"
    wanted = {
        "booked": ("obama2.jpg", scenes / "booked-traveller.avi"),
        "stranger": ("astronaut.png", scenes / "not-on-flight.avi"),
        "booked2": ("obama3.jpg", scenes / "booked-traveller-2.avi"),
        "optout": ("biden.jpg", scenes / "opt-out.avi"),
    }
    paths = {"empty": _empty_lane_video()}
    for key, (photo, video) in wanted.items():
        paths[key] = video
        if not video.exists():
            traveller_scene(video, assets / photo)
    return paths


def _default_queue(work: Path) -> tuple[list[Traveller], Path]:
    assets = demo_assets_dir()
    missing = [n for n in ("obama.jpg", "biden.jpg", "astronaut.png") if not (assets / n).exists()]
    if missing:
        raise SystemExit(f"demo photos missing from {assets}: {missing}; run `make setup` first")
    manifest = work / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": "PAX-001",
                    "category": "us_citizen",
                    "photo": str(assets / "obama.jpg"),
                },
                {
                    "traveller_id": "PAX-002",
                    "category": "us_citizen",
                    "photo": str(assets / "biden.jpg"),
                },
            ]
        )
    )
    videos = _scene_videos()

    def scene(name: str) -> Callable[[float | None], FrameSource]:
        return lambda fps: ReplaySource(videos[name], realtime_fps=fps)

    queue = [
        Traveller("booked traveller", scene("booked")),
        Traveller("empty lane", scene("empty")),
        Traveller("traveller not on this flight", scene("stranger")),
        Traveller("traveller who opts out", scene("optout"), opts_out=True),
        # another photo of traveller 1: already boarded, the gate stays shut
        Traveller("the same traveller comes back", scene("booked2")),
    ]
    return queue, manifest


def _dataset_queue(
    dataset: Path, work: Path, photos: int = 3, enrolled: int = 12, strangers: int = 4
):
    """Document photos = an identity's first ``photos`` images (at least one stays live);
    live capture = the next one."""
    dataset = dataset.resolve()
    people = sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith("_"))
    people = [p for p in people if len(sorted(p.glob("*.jpg"))) >= 2]
    if len(people) < enrolled + strangers:
        raise SystemExit(
            f"{dataset} needs at least {enrolled + strangers} identities with 2 photos"
        )
    entries, queue = [], []
    for number, person in enumerate(people[: enrolled + strangers]):
        images = sorted(person.glob("*.jpg"))
        documents = max(1, min(photos, len(images) - 1))
        live = images[documents]
        if number < enrolled:
            entries.append(
                {
                    "traveller_id": f"PAX-{number:03d}",
                    "category": "in_scope",
                    "photos": [str(p) for p in images[:documents]],
                }
            )
            label = "booked traveller"
        else:
            label = "traveller not on this flight"
        queue.append(
            Traveller(
                label,
                lambda fps, s=live: ReplaySource([s], canvas=CANVAS, repeat=20, realtime_fps=fps),
            )
        )
    empty = _empty_lane_video()
    queue.insert(2, Traveller("empty lane", lambda fps: ReplaySource(empty, realtime_fps=fps)))
    queue.insert(4, Traveller("traveller who opts out", queue[0].source, opts_out=True))
    manifest = work / "gallery.json"
    manifest.write_text(json.dumps(entries))
    return queue, manifest


def _describe(number: int, traveller: Traveller, result: TravellerOutcome) -> str:
    verdicts = {
        "granted": "GATE OPEN",
        "referred": "SEE AGENT",
        "manual_check": "MANUAL DOCUMENT CHECK",
        "no_face": "nobody in view",
    }
    parts = [f"{number:>2}. {traveller.label:<32} -> {verdicts[result.outcome]:<22}"]
    parts.append(f"({result.reason})")
    if result.e2e_ms is not None:
        parts.append(f"{result.e2e_ms:.0f} ms face-to-gate")
    if result.purge:
        kib = result.purge.bytes_zeroized / 1024
        parts.append(f"purged {result.purge.buffers_zeroized} buffers ({kib:.0f} KiB)")
    sent = _captures_sent(result)
    parts.append(
        {0: "nothing sent", 1: "frame sent"}.get(sent, f"{sent} frames sent (taken again)")
    )
    return "  ".join(parts)


def _captures_sent(result: TravellerOutcome) -> int:
    return len(result.earlier_capture_ids) + result.frame_sent


def run_demo(
    dataset: Path | None = None,
    *,
    emit: Callable[[str], None] = print,
    recognizer: str = DEFAULT_RECOGNIZER,
    photos_per_traveller: int = 3,
    interpreter: str = "cpython",
    screens: ScreensOptions | None = None,
) -> dict:
    """Run the demo queue; returns the summary that ``--json`` prints.

    ``interpreter`` runs the gate firmware on CPython or on MicroPython (raises
    ``SimulatorError`` before anything else starts if MicroPython cannot run);
    ``screens`` serves the traveller display and the agent station while it runs.
    """
    work = fresh_run_dir("demo")
    pki = create_dev_pki(data_dir() / "pki")
    detector: Detector = create_detector()
    if dataset is None:
        queue, manifest = _default_queue(work)
    else:
        queue, manifest = _dataset_queue(dataset, work, photos_per_traveller)

    encoder = open_recognizer(recognizer)
    gallery = Gallery(work / "gallery.sqlite", encoder.info)
    flight = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    photos = demo_assets_dir() if dataset is None else dataset.resolve()
    enrolled = gallery.enroll_manifest(flight, manifest, encoder, photos_root=photos).travellers
    relay_key = os.urandom(32)
    simulator = Simulator(relay_key, interpreter=interpreter).start()
    service = service_from_pki(pki, gallery, encoder)
    server, port = start_server(service, pki)
    link = GateLink(simulator.port, relay_key).open()
    client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID)
    ledger_path = work / "purge-ledger.jsonl"
    ledger = PurgeLedger(ledger_path, default_key_path(ledger_path))
    audit = WriteAudit.instance()
    results: list[TravellerOutcome] = []
    shown = None
    try:
        session = client.open_session(FLIGHT)
        emit(
            f"flight {flight} at gate {FLIGHT.gate}: gallery of {session.gallery_size} "
            f"travellers ({enrolled} enrolled), matching service on 127.0.0.1:{port} (mTLS, "
            f"{encoder.info.template_id})"
        )
        emit(
            f"gate MCU simulator ({interpreter} firmware) on {simulator.port}; "
            f"device {DEV_DEVICE_ID}"
        )
        gate = GateController(link)
        boarding = TravellerPipeline(detector, client, gate, ledger)
        workflow = GateWorkflow(boarding, FLIGHT)
        if screens is not None:
            from testbed.demo_screens import DEMO_AGENT, start_demo_screens

            shown = start_demo_screens(
                work, FLIGHT, gate, link, boarding, workflow, ledger, screens.port
            )
            emit(f"traveller display: {shown.url}/   privacy notice: {shown.url}/privacy")
            emit(f"agent station: {shown.url}/agent   (agent {DEMO_AGENT}, PIN {shown.pin})")
            emit(f"metrics: {shown.url}/metrics")
            emit(f"first traveller in {screens.lead_in_s:.0f} s")
        gate.start()
        if screens is not None:
            time.sleep(screens.lead_in_s)
        audit.start(watch=[work, Path.cwd()])
        fps = screens.fps if screens is not None else None
        for number, traveller in enumerate(queue, 1):
            if traveller.opts_out:
                simulator.press_opt_out()
                wait_for(gate.opt_out_pending, 3.0)
            source = traveller.source(fps)
            try:
                result = workflow.board(source)
            finally:
                source.close()
            results.append(result)
            emit(_describe(number, traveller, result))
            if result.outcome == "granted":
                wait_for(lambda: simulator.relay_open, 3.0)
            if shown is not None and screens is not None:
                shown.traveller_served(result)
                if result.outcome == "manual_check":
                    from testbed.demo_screens import wait_for_agent

                    emit(f"    waiting up to {screens.agent_wait_s:.0f} s for the agent")
                    wait_for_agent(gate, screens.agent_wait_s)
                time.sleep(screens.hold_s if result.outcome != "no_face" else 0.0)
            gate.ready()
        wait_for(lambda: boarding.receipts.owed == 0, 10.0)  # sent in the background
        audit.stop()
        image_files = audit.image_files()
        relay_pulses = len(simulator.relay_pulses)
    finally:
        audit.stop()
        if shown is not None:
            shown.close()
        link.close()
        simulator.stop()
        client.close()
        server.stop(grace=None)
    ledger_records = ledger.verify()
    e2e = [r.e2e_ms for r in results if r.outcome == "granted" and r.e2e_ms is not None]
    booked = [
        r
        for t, r in zip(queue, results, strict=True)
        if t.label.startswith("booked") and not t.opts_out
    ]
    summary = {
        "travellers": sum(1 for t in queue if t.label != "empty lane"),
        "granted": sum(r.outcome == "granted" for r in results),
        "referred": sum(r.outcome == "referred" for r in results),
        "manual_check": sum(r.outcome == "manual_check" for r in results),
        "no_face": sum(r.outcome == "no_face" for r in results),
        "frames_sent": sum(_captures_sent(r) for r in results),
        "frames_purged": sum(
            _captures_sent(r) for r in results if r.purge and r.purge.bytes_zeroized > 0
        ),
        "purge_receipts": len(service.purge_receipts),
        "relay_pulses": relay_pulses,
        "ledger_records": ledger_records,
        "image_files_written": len(image_files),
        "files_written": len(audit.written),
        "e2e_ms_p50": round(statistics.median(e2e), 1) if e2e else None,
        "genuine_referral_rate": (
            round(sum(r.outcome == "referred" for r in booked) / len(booked), 4) if booked else None
        ),
        "recognizer": encoder.info.template_id,
        "firmware_interpreter": interpreter,
    }
    emit(f"purge ledger: {ledger.path} ({ledger_records} records, chain verified)")
    if image_files:
        emit(f"IMAGE DATA WRITTEN TO DISK: {image_files}")
    return summary


def main(
    dataset: Path | None,
    as_json: bool,
    recognizer: str = DEFAULT_RECOGNIZER,
    photos_per_traveller: int = 3,
    interpreter: str = "cpython",
    *,
    screens: ScreensOptions | None = None,
) -> int:
    try:
        summary = run_demo(
            dataset,
            recognizer=recognizer,
            photos_per_traveller=photos_per_traveller,
            interpreter=interpreter,
            screens=screens,
        )
    except SimulatorError as exc:
        print(f"gatectl demo: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(summary), flush=True)
    else:
        print("summary: " + ", ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    return 0 if summary["image_files_written"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(None, "--json" in sys.argv))


__all__ = ["CANVAS", "FLIGHT", "ScreensOptions", "Traveller", "main", "run_demo"]

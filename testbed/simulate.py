"""`gatectl simulate`: board a flight through the real components, with a mix of travellers.

The reference matching service runs on loopback with mutual TLS and a gallery enrolled
from document photos (with each passenger's name and booking reference, so pass-then-face
can be confirmed); the gate MCU is the firmware simulator behind a pseudo-terminal; the
camera replays dataset faces placed in 1280x720 frames at 30 fps. Each traveller goes
through :class:`appliance.workflow.GateWorkflow` exactly as at a real gate: the agent
scans the pass, the traveller looks at the camera (or presses opt-out), the agent
releases or cancels, and after a grant the door sensor reports the barrier opening and
closing (the simulated walk).

Mix (shares of the travellers, exact counts, order shuffled by ``seed``):

* ``enrolled``: on the flight's gallery; scans, looks, is granted, walks through;
* ``not_on_flight``: a valid pass but a face not in the gallery: referred, agent cancels;
* ``opt_out``: presses the button (before or during the capture): manual check, agent
  releases after checking documents, walks through;
* ``bad_scan``: the first scan of the pass is unreadable, the agent rescans, then as
  enrolled;
* ``two_faces``: someone else in the frame too: no usable face, referred, agent checks
  and releases.

Dataset: ``None`` uses the packaged demo photos (``appliance.paths.demo_assets_dir()``);
otherwise a folder of ``<identity>/*.jpg``: an identity's first ``photos_per_traveller``
photos (default 3, always leaving at least one) are its document photos, fused into one
template, the others are live faces; every fifth identity is left out of the gallery
(not on the flight). ``recognizer`` picks the matching service's face recognizer.

``seconds_per_traveller_p50`` is the gate's own time per traveller (pass scan or capture
start to the decision shown on the indicator), without the simulated walk or the agent's
time. ``travellers_per_minute`` is over the whole run minus the simulated walking time.
``capture_rate`` is the share of travellers alone in front of the camera (neither opted
out nor two faces) for whom a usable frame was sent; ``two_faces_sent`` counts the frames
sent for two people at once, which "one at a time" must keep at 0 (they used to count as
capture failures, which hid how often the gate refused them rightly).
``genuine_referral_rate`` is the share of enrolled travellers alone in front of the
camera (kinds ``enrolled`` and ``bad_scan``) who were referred to the agent instead of
boarding: what the matcher's false non-matches (and failed captures) cost the queue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from appliance.custody.audit import default_key_path
from appliance.custody.ledger import PurgeLedger
from appliance.gate.boarding_log import BoardingLog
from appliance.gate.flight import Flight
from appliance.gate.machine import GateController, State
from appliance.gate.scanner import ScanParser
from appliance.gate.workflow import GateWorkflow, Mode
from appliance.matching.client import MatchingClient
from appliance.paths import demo_assets_dir
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import ReplaySource
from appliance.vision.detectors import create_detector
from firmware_bridge.host import GateLink
from firmware_bridge.simulator import Simulator, SimulatorError
from gate_contract.progress import SILENT, Progress
from matching_service.dev_ca import DEV_DEVICE_ID, create_dev_pki
from matching_service.gallery import Gallery, flight_key
from matching_service.recognizers import DEFAULT_RECOGNIZER, open_recognizer
from matching_service.server import service_from_pki, start_server
from testbed.runs import fresh_run_dir, wait_for
from testbed.scenes import portrait_faces as _portrait_faces
from testbed.testing import Person, TestAgent, bcbp, damaged

FLIGHT = Flight("BA", "0283", "2026-11-25", "LAX", "B42")
CANVAS = (1280, 720)
FPS = 30
KINDS = ("enrolled", "not_on_flight", "opt_out", "bad_scan", "two_faces")
DEFAULT_MIX = {
    "enrolled": 0.70,
    "not_on_flight": 0.10,
    "opt_out": 0.08,
    "bad_scan": 0.06,
    "two_faces": 0.06,
}
AGENT = TestAgent("SIM01", FLIGHT.departure_airport)  # the simulated gate agent
WALK_S = 0.05  # simulated: relay opens -> door opens -> door closes
TRAVELLER_TIMEOUT_S = 20.0  # a traveller not logged by then is a failure of the run
PHOTOS_PER_TRAVELLER = 3  # document photos per enrolled traveller, where the dataset has them
GENUINE_KINDS = ("enrolled", "bad_scan")


def _name(identity: str) -> str:
    parts = [p for p in identity.replace("-", "_").split("_") if p]
    if len(parts) < 2:
        return (parts[0] if parts else "TRAVELLER").upper()[:20]
    return f"{parts[-1]}/{' '.join(parts[:-1])}".upper()[:20]


def people_from_dataset(dataset: Path, photos_per_traveller: int = PHOTOS_PER_TRAVELLER):
    """People of ``dataset``: the first photos are documents, at least one stays live."""
    folders = sorted(p for p in dataset.resolve().iterdir() if p.is_dir())
    people = []
    for folder in folders:
        if folder.name.startswith("_"):
            continue
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) < 2:
            continue
        number = len(people)
        documents = max(1, min(photos_per_traveller, len(photos) - 1))
        people.append(
            Person(
                folder.name,
                _name(folder.name),
                f"P{number:05d}",
                photos[0],
                tuple(photos[documents:]),
                enrolled=number % 5 != 4,
                extra_documents=tuple(photos[1:documents]),
            )
        )
    if sum(p.enrolled for p in people) < 2 or all(p.enrolled for p in people):
        raise SystemExit(f"{dataset} needs at least 5 identities with 2 photos or more")
    return people


def people_from_demo_assets() -> list[Person]:
    assets = demo_assets_dir()
    wanted = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png")
    missing = [n for n in wanted if not (assets / n).exists()]
    if missing:
        raise SystemExit(f"demo photos missing from {assets}: {missing}; run `make setup` first")
    return [
        Person(
            "obama",
            "OBAMA/BARACK",
            "PAX001",
            assets / "obama.jpg",
            (assets / "obama2.jpg", assets / "obama3.jpg"),
            True,
        ),
        Person(
            "biden", "BIDEN/JOSEPH", "PAX002", assets / "biden.jpg", (assets / "biden.jpg",), True
        ),
        Person(
            "astronaut",
            "COLLINS/EILEEN",
            "PAX003",
            assets / "astronaut.png",
            (assets / "astronaut.png",),
            False,
        ),
    ]


SIDE_BY_SIDE_FACE_PX = 110  # each face's width when two people stand at the gate together


SIDE_BY_SIDE_FACE_TOP = 0.3  # where the faces' centres stand, as a share of the height


def _face_slot(image: np.ndarray, name: str, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled so its face is ``SIDE_BY_SIDE_FACE_PX`` wide, cut to ``size``
    (w, h) around the face (grey where the photo ends)."""
    faces = _portrait_faces(image)
    if not faces:
        raise RuntimeError(f"no face found in {name}")
    face = faces[0]
    scale = SIDE_BY_SIDE_FACE_PX / face.width
    scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    width, height = size
    centre_x = (face.box[0] + face.box[2]) / 2 * scale
    centre_y = (face.box[1] + face.box[3]) / 2 * scale
    x0, y0 = round(centre_x - width / 2), round(centre_y - height * SIDE_BY_SIDE_FACE_TOP)
    slot = np.full((height, width, 3), 118, np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + width, scaled.shape[1]), min(y0 + height, scaled.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        slot[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = scaled[sy0:sy1, sx0:sx1]
    scaled.fill(0)
    return slot


class TwoFacesSource:
    """Two people side by side in front of the camera (1280x720, ``frames`` frames)."""

    live = False

    def __init__(self, first: Path, second: Path, frames: int = 45) -> None:
        self._paths = (first, second)
        self._frames = frames
        self._shown = 0
        self._scene: np.ndarray | None = None

    def _compose(self) -> np.ndarray:
        """Shoulder to shoulder in the middle of the frame (inside the capture zone), both
        faces the same size: two people side by side stand as near to the camera.

        Each photo is scaled so that its face is ``SIDE_BY_SIDE_FACE_PX`` wide and then cut
        to its half of the scene around the face (a whole photo shrunk to fit its half
        would leave that face smaller: someone queueing behind, not a companion).
        """
        width, height = CANVAS
        slot_width = height // 2
        left = width // 2 - slot_width
        scene = np.full((height, width, 3), 118, np.uint8)
        for slot, path in enumerate(self._paths):
            image = cv2.imread(str(path))
            if image is None:
                raise RuntimeError(f"cannot read {path}")
            try:
                part = _face_slot(image, path.name, (slot_width, height))
            finally:
                image.fill(0)
            x = left + slot * slot_width
            scene[:, x : x + slot_width] = part
            part.fill(0)
        return scene

    def read(self) -> np.ndarray | None:
        if self._shown >= self._frames:
            return None
        if self._scene is None:
            self._scene = self._compose()
        self._shown += 1
        return self._scene.copy()

    def close(self) -> None:
        if self._scene is not None:
            self._scene.fill(0)
            self._scene = None


class _Paced:
    """A source delivering frames no faster than the camera's frame rate."""

    def __init__(self, source, fps: float = FPS, on_read: Callable[[int], None] | None = None):
        self._source = source
        self._period = 1.0 / fps
        self._due: float | None = None
        self._on_read = on_read
        self.reads = 0

    def read(self):
        now = time.perf_counter()
        if self._due is not None and now < self._due:
            time.sleep(self._due - now)
        self._due = max(self._due or now, now) + self._period
        frame = self._source.read()
        self.reads += 1
        if self._on_read is not None:
            self._on_read(self.reads)
        return frame

    def close(self) -> None:
        self._source.close()


def plan(travellers: int, mix: dict | None, seed: int) -> list[str]:
    """Exactly ``round(share * travellers)`` of each kind (rest enrolled), shuffled."""
    shares = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(shares) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown traveller kinds in the mix: {sorted(unknown)}")
    if any(not isinstance(v, int | float) or v < 0 for v in shares.values()):
        raise ValueError("mix shares must be non-negative numbers")
    total = sum(shares.values()) or 1.0
    counts = {k: round(travellers * shares.get(k, 0) / total) for k in KINDS if k != "enrolled"}
    while sum(counts.values()) > travellers:
        biggest = max(counts, key=counts.get)
        counts[biggest] -= 1
    kinds = [k for k, n in counts.items() for _ in range(n)]
    kinds += ["enrolled"] * (travellers - len(kinds))
    random.Random(seed).shuffle(kinds)
    return kinds


def run_simulation(
    travellers: int = 20,
    dataset: Path | None = None,
    *,
    mix: dict | None = None,
    seed: int = 0,
    mode: Mode | str = Mode.PASS_THEN_FACE,
    work: Path | None = None,
    emit: Callable[[str], None] | None = None,
    recognizer: str = DEFAULT_RECOGNIZER,
    photos_per_traveller: int = PHOTOS_PER_TRAVELLER,
    interpreter: str = "cpython",
    progress: Progress = SILENT,
) -> dict:
    """Board ``travellers`` through the real parts; returns the summary (see module doc).

    ``interpreter`` runs the gate firmware on CPython or on MicroPython.
    """
    if travellers < 1:
        raise ValueError("travellers must be at least 1")
    mode = Mode(mode)
    work = work or fresh_run_dir("simulate")
    people = (
        people_from_demo_assets()
        if dataset is None
        else people_from_dataset(dataset, photos_per_traveller)
    )
    enrolled = [p for p in people if p.enrolled]
    strangers = [p for p in people if not p.enrolled]
    kinds = plan(travellers, mix, seed)
    rng = random.Random(seed + 1)

    manifest = work / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": f"PAX-{p.key}",
                    "category": "in_scope",
                    "photos": [str(photo) for photo in p.documents],
                    "pnr": p.pnr,
                    "name": p.name,
                }
                for p in enrolled
            ]
        )
    )
    flights = _flights(kinds, enrolled, rng)
    with tempfile.TemporaryDirectory(prefix="gate-sim-pki-") as pki_dir:
        pki = create_dev_pki(Path(pki_dir))
        encoder = open_recognizer(recognizer)
        gallery = Gallery(work / "gallery.sqlite", encoder.info)
        photos = demo_assets_dir() if dataset is None else dataset.resolve()
        enrolment = None
        for flight in sorted({f for f, _ in flights}, key=lambda f: f.flight_number):
            key = flight_key(
                flight.carrier, flight.flight_number, flight.date, flight.departure_airport
            )
            enrolment = gallery.enroll_manifest(key, manifest, encoder, photos_root=photos)
        service = service_from_pki(pki, gallery, encoder)
        relay_key = os.urandom(32)
        simulator = Simulator(relay_key, interpreter=interpreter).start()
        server, port = start_server(service, pki)
        link = GateLink(simulator.port, relay_key).open()
        client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=5.0)
        ledger_path = work / "purge-ledger.jsonl"
        ledger = PurgeLedger(ledger_path, default_key_path(ledger_path))
        boarding_log = BoardingLog(work / "boarding-log.jsonl")
        gate = GateController(link)
        detector = create_detector()
        boarding = progress.bar("boarding", total=travellers, unit="traveller")
        try:
            gate.start()
            sim = _Run(gate, simulator, rng, mode)
            started = time.perf_counter()
            boarding_flight = None
            for number, (kind, (flight, person)) in enumerate(zip(kinds, flights, strict=True), 1):
                if flight is not boarding_flight:  # the next flight boards at this gate
                    boarding_flight = flight
                    client.open_session(flight)
                    pipeline = TravellerPipeline(
                        detector, client, gate, ledger, verdict_timeout_s=4.0
                    )
                    scanner = ScanParser(
                        reference_date=dt.date.fromisoformat(flight.date), agents=AGENT.registry()
                    )
                    sim.workflow = GateWorkflow(
                        pipeline, flight, mode=mode, boarding_log=boarding_log, scanner=scanner
                    )
                if kind == "not_on_flight":
                    person = rng.choice(strangers or enrolled)
                sim.traveller(number, kind, person, rng.choice(people))
                boarding.update()
                if emit:
                    emit(f"{number:>4}. {kind:<14} -> {boarding_log.records[-1]['outcome']}")
            elapsed = time.perf_counter() - started
            relay_pulses = len(simulator.relay_pulses)
        finally:
            boarding.close()
            gate.close()
            link.close()
            simulator.stop()
            client.close()
            server.stop(grace=None)
    summary = _summary(boarding_log.records, kinds, sim, elapsed, relay_pulses, work, mode, seed)
    summary["recognizer"] = encoder.info.template_id
    summary["document_photos"] = enrolment.photos
    summary["document_photos_skipped"] = len(enrolment.skipped)
    summary["firmware_interpreter"] = interpreter
    summary["flights"] = len({f for f, _ in flights})
    return summary


MATCHING_KINDS = frozenset({"enrolled", "bad_scan"})  # travellers whose face is matched


def _flights(kinds: list[str], enrolled: list[Person], rng: random.Random):
    """(flight, person) for each traveller: a booked person boards a flight once, so when
    every booked person has boarded, the next travellers board the next flight (the same
    people, booked again), as a gate boards several flights in a day."""
    assigned = []
    number, pool = 0, []
    for kind in kinds:
        if kind in MATCHING_KINDS and not pool:
            number += 1
            pool = rng.sample(enrolled, len(enrolled))
        person = pool.pop() if kind in MATCHING_KINDS else rng.choice(enrolled)
        flight = _flight(max(number, 1))
        assigned.append((flight, person))
    return assigned


@functools.cache
def _flight(number: int) -> Flight:
    """The ``number``-th flight of the simulated day (the first is ``FLIGHT``)."""
    return dataclasses.replace(
        FLIGHT, flight_number=f"{int(FLIGHT.flight_number) + number - 1:04d}"
    )


class _Run:
    """Plays each traveller and the agent against the workflow (``workflow``: the flight
    boarding now)."""

    workflow: GateWorkflow

    def __init__(self, gate, simulator, rng: random.Random, mode):
        self.gate = gate
        self.simulator = simulator
        self.rng = rng
        self.mode = mode
        self.walking_s = 0.0
        self.kind_outcomes: dict[str, Counter] = {}
        self.rows: list[tuple[str, dict]] = []

    def _walk_through(self) -> None:
        """The traveller walks through the open barrier: door opens, then closes."""
        if not wait_for(lambda: self.simulator.relay_open, 2.0, interval=0.002):
            return  # the passage window will close the grant ("no passage")
        time.sleep(WALK_S)
        self.simulator.set_door(True)
        time.sleep(WALK_S)
        self.simulator.set_door(False)
        self.walking_s += 2 * WALK_S

    def traveller(self, number: int, kind: str, person: Person, other: Person) -> None:
        wf = self.workflow
        live = self.rng.choice(person.live)
        text = bcbp(person, number, wf.flight)
        logged = len(wf.log.records)
        press_before = kind == "opt_out" and self.rng.random() < 0.5

        def press_on_read(reads: int) -> None:
            if kind == "opt_out" and not press_before and reads == 1:
                self.simulator.press_opt_out()
                wait_for(self.gate.opt_out_pending, 2.0, interval=0.002)

        if kind == "two_faces":
            second = other.live[0] if other is not person else live
            camera = _Paced(TwoFacesSource(live, second), on_read=press_on_read)
        else:
            replay = ReplaySource([live], canvas=CANVAS, repeat=45)
            camera = _Paced(replay, on_read=press_on_read)

        if kind == "bad_scan":
            wf.scan(damaged(text))  # unreadable: the gate stays ready, the agent rescans
        if self.mode is Mode.PASS_THEN_FACE or kind == "bad_scan":
            wf.scan(text)
        if press_before:
            self.simulator.press_opt_out()
            wait_for(lambda: self.gate.phase is State.MANUAL_CHECK, 2.0, interval=0.002)
        try:
            wf.board(camera)
        finally:
            camera.close()
        phase = self.gate.phase
        if phase is State.GRANTED:
            self._walk_through()
        elif phase in (State.REFER_TO_AGENT, State.MANUAL_CHECK):
            if kind == "not_on_flight":
                wf.scan(AGENT.action("CANCEL"))
            else:  # documents checked by hand: the agent lets the traveller through
                if self.mode is Mode.BIOMETRIC_FIRST:
                    wf.scan(text)
                wf.scan(AGENT.action("RELEASE"))
                if self.gate.phase is State.AGENT_RELEASED:
                    self._walk_through()
        if not wf.wait_idle(TRAVELLER_TIMEOUT_S):
            raise RuntimeError(f"traveller {number} ({kind}) not concluded: {self.gate.phase}")
        if len(wf.log.records) > logged:
            record = wf.log.records[-1]
            self.rows.append((kind, record))
            self.kind_outcomes.setdefault(kind, Counter())[record["outcome"]] += 1


def _summary(records, kinds, sim: _Run, elapsed, relay_pulses, work, mode, seed) -> dict:
    outcomes = Counter(r["outcome"] for r in records)
    gate_s = [r["gate_ms"] / 1000 for r in records if r.get("gate_ms") is not None]
    alone = [r for k, r in sim.rows if k not in ("opt_out", "two_faces")]
    sent = sum(1 for r in alone if r["frame_sent"])
    genuine = [r for k, r in sim.rows if k in GENUINE_KINDS]
    genuine_referred = sum(1 for r in genuine if r["outcome"] == "referred")
    busy = max(elapsed - sim.walking_s, 1e-6)
    return {
        "travellers": len(records),
        "granted": outcomes["granted"],
        "referred": outcomes["referred"],
        "manual_check": outcomes["manual_check"],
        "other": len(records)
        - outcomes["granted"]
        - outcomes["referred"]
        - outcomes["manual_check"],
        "released_by_agent": sum(1 for r in records if r["released_by_agent"]),
        "bad_scans": sum(r["bad_scans"] for r in records),
        "frames_sent": sum(r.get("captures_sent", 0) for r in records),
        "relay_pulses": relay_pulses,
        "capture_rate": round(sent / len(alone), 3) if alone else None,
        "two_faces_sent": sum(1 for k, r in sim.rows if k == "two_faces" and r["frame_sent"]),
        "genuine_referral_rate": round(genuine_referred / len(genuine), 4) if genuine else None,
        "genuine_referred": genuine_referred,
        "genuine_travellers": len(genuine),
        "seconds_per_traveller_p50": round(statistics.median(gate_s), 3) if gate_s else None,
        "seconds_per_traveller_p90": (
            round(statistics.quantiles(gate_s, n=10)[-1], 3) if len(gate_s) >= 2 else None
        ),
        "travellers_per_minute": round(len(records) * 60 / busy, 1),
        "wall_seconds": round(elapsed, 1),
        "mode": mode.value,
        "seed": seed,
        "mix": dict(Counter(kinds)),
        "outcomes_by_kind": {k: dict(v) for k, v in sorted(sim.kind_outcomes.items())},
        "boarding_log": str(work / "boarding-log.jsonl"),
    }


def simulate_main(
    travellers: int,
    dataset: Path | None,
    as_json: bool,
    mix: dict | None,
    seed: int,
    recognizer: str = DEFAULT_RECOGNIZER,
    photos_per_traveller: int = PHOTOS_PER_TRAVELLER,
    interpreter: str = "cpython",
) -> int:
    """``gatectl simulate``: a line per traveller (or nothing, with ``as_json``), a
    progress bar on a terminal, and the summary as the last line."""
    progress = Progress.for_command(as_json=as_json)
    try:
        summary = run_simulation(
            travellers,
            dataset,
            mix=mix,
            seed=seed,
            emit=None if as_json else progress.write,
            recognizer=recognizer,
            photos_per_traveller=photos_per_traveller,
            interpreter=interpreter,
            progress=progress,
        )
    except SimulatorError as exc:
        print(f"gatectl simulate: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(summary), flush=True)
    else:
        print("summary: " + ", ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    complete = summary["travellers"] == travellers
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(simulate_main(int(sys.argv[1]) if len(sys.argv) > 1 else 8, None, True, None, 0))


__all__ = [
    "AGENT",
    "CANVAS",
    "DEFAULT_MIX",
    "FLIGHT",
    "FPS",
    "GENUINE_KINDS",
    "KINDS",
    "MATCHING_KINDS",
    "PHOTOS_PER_TRAVELLER",
    "SIDE_BY_SIDE_FACE_PX",
    "SIDE_BY_SIDE_FACE_TOP",
    "TRAVELLER_TIMEOUT_S",
    "WALK_S",
    "TwoFacesSource",
    "people_from_dataset",
    "people_from_demo_assets",
    "plan",
    "run_simulation",
    "simulate_main",
]

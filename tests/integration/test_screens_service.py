"""The screens of the running service, in a real browser, with every part real.

``run_service`` on a thread with its configuration file: the reference matcher over
mutual TLS, the firmware simulator on a pty, a barcode scanner on a pty, a replay
camera paced at 30 frames a second, the screens on loopback. A traveller walks up
(far, then head tilted, then blurred by movement, then well placed) and the display
shows each instruction in turn; a pass for another flight reaches the agent with its
reason and the name on the pass; an opt-out shows the manual check, the agent signs
in, releases with a reason, and the simulator's relay pulses. The boarding log names
the agent; /metrics counts it all.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

from appliance.errors import ScreensError
from appliance.gate.agents import set_pin
from appliance.service.config import load_config
from appliance.service.runner import EXIT_OK, run_service
from appliance.service.status import read_status
from appliance.vision.camera import ReplaySource, place_in_canvas
from firmware_bridge.simulator import Simulator
from matching_service.gallery import Gallery, flight_key
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from testbed.testing import FLIGHT, make_bcbp
from tests.support import unit_config

pytestmark = pytest.mark.browser
TIMEOUT = 90.0
AGENT, PIN = "A123", "482913"
NAME, PNR = "OBAMA/BARACK", "ABC123"
FRAMES_PER_POSE = 30  # one second at 30 fps
# Records every instruction the display shows, in order (the test's eyes on the page).
WATCH = """
window.__shown = [];
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("instruction-text");
  new MutationObserver(() => window.__shown.push(el.dataset.key))
    .observe(el, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture(scope="module")
def holders(pki, encoder, demo_photos, tmp_path_factory) -> Iterator[str]:
    """The matcher with the passenger enrolled under the pass's name and booking."""
    work = tmp_path_factory.mktemp("screens-matcher")
    manifest = work / "gallery.json"
    entry = {"traveller_id": "PAX-OB", "category": "us_citizen", "pnr": PNR, "name": NAME}
    manifest.write_text(json.dumps([{**entry, "photo": str(demo_photos / "obama.jpg")}]))
    gallery = Gallery(work / "gallery.sqlite")
    key = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    gallery.enroll_manifest(key, manifest, encoder, photos_root=demo_photos)
    server, port = start_server(service_from_pki(pki, gallery, encoder), pki)
    yield f"localhost:{port}"
    server.stop(grace=None)


@pytest.fixture
def walk_up(tmp_path: Path, demo_photos: Path) -> list[Path]:
    """Four stills of one traveller (test input made from a demo photo, not a capture):
    far away, head tilted, blurred by movement, then well placed."""
    photo = cv2.imread(str(demo_photos / "obama2.jpg"))
    well = place_in_canvas(photo, (1280, 720), 0.5)
    tilt = cv2.getRotationMatrix2D((640, 360), 35, 1.0)
    poses = {
        "1-far": place_in_canvas(photo, (1280, 720), 0.15),
        "2-tilted": cv2.warpAffine(well, tilt, (1280, 720), borderValue=(118, 118, 118)),
        "3-moving": cv2.GaussianBlur(well, (31, 31), 0),
        "4-still": well,
    }
    paths = []
    for name, frame in poses.items():
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), frame)
        paths.append(path)
    return paths


class Scanner:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)

    def scan(self, text: str) -> None:
        os.write(self.master, text.encode("ascii") + b"\r")

    def close(self) -> None:
        for fd in (self.slave, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)


def _config(
    tmp_path: Path, target: str, pki_root: Path, mcu: Simulator, key: bytes, scanner
) -> Path:
    set_pin(tmp_path / "agents.json", AGENT, PIN)
    return unit_config(
        tmp_path,
        matcher_target=target,
        pki_dir=pki_root,
        serial_port=mcu.port,
        relay_key=key,
        camera_source=f"replay:{tmp_path}",
        serial={"pulse_ms": 1000},
        vision={"capture_window_frames": 300},
        capture={"mode": "pass_then_face"},
        scanner={"port": scanner.port},
        service={"stall_s": 5.0},
        screens={"port": 0},
        agents={"file": "agents.json"},
    )


def test_the_screens_of_a_running_gate(tmp_path, holders, pki, walk_up, page) -> None:
    key = os.urandom(32)
    simulator = Simulator(key).start()
    scanner = Scanner()
    config = load_config(_config(tmp_path, holders, pki.root, simulator, key, scanner))
    camera = ReplaySource(walk_up, repeat=FRAMES_PER_POSE, realtime_fps=30)
    stop = threading.Event()
    results: list[int] = []
    service = threading.Thread(
        target=lambda: results.append(
            run_service(config, stop, result_hold_s=0.1, open_camera=lambda _: camera)
        ),
        daemon=True,
    )
    service.start()
    try:

        def status() -> dict:
            return read_status(config.status_path) if config.status_path.exists() else {}

        assert wait_for(lambda: status().get("service") == "serving", TIMEOUT), status()
        url = status()["screens"]
        assert url.startswith("http://127.0.0.1:")

        # 1. a traveller walks up: the display shows each instruction in turn
        page.add_init_script(WATCH)
        page.goto(url + "/")
        instruction = page.locator("#instruction-text")
        expect(instruction).to_have_text("Please scan your boarding pass")
        scanner.scan(make_bcbp(NAME, PNR, seat="012A", sequence=7))
        expect(instruction).to_have_text("Please proceed", timeout=TIMEOUT * 1000)
        expect(page.locator("#seat")).to_have_text("Seat 12A")
        seen = page.evaluate("window.__shown")
        shown = [key for n, key in enumerate(seen) if n == 0 or key != seen[n - 1]]
        wanted = ["look_at_camera", "come_closer", "look_straight", "hold_still", "proceed"]
        it = iter(shown)
        assert all(step in it for step in wanted), shown  # in this order
        assert wait_for(lambda: len(simulator.relay_pulses) == 1, TIMEOUT)
        simulator.set_door(True)
        simulator.set_door(False)
        expect(instruction).to_have_text("Please scan your boarding pass")

        # 2. a pass for another flight: the agent sees why, and whose pass it is
        agent = page.context.new_page()
        agent.goto(url + "/agent")
        agent.fill("#agent_id", AGENT)
        agent.fill("#credential", PIN)
        agent.click("#sign-in")
        expect(agent.locator("#phase")).to_have_text("Ready")
        scanner.scan(make_bcbp(NAME, PNR, flight="0999", sequence=8))
        expect(instruction).to_have_text("Please see the agent")
        expect(agent.locator("#referral")).to_have_text("Boarding pass for another flight")
        expect(agent.locator("#name")).to_have_text(NAME)
        agent.select_option("#cancel-reason", "not_boarding")
        agent.click("#cancel")
        expect(agent.locator("#phase")).to_have_text("Ready")

        # 3. an opt-out: the manual check, then the agent releases and the relay pulses
        simulator.press_opt_out()
        expect(instruction).to_have_text("Manual document check: please see the agent")
        expect(agent.locator("#referral")).to_have_text(
            "Traveller opted out: check documents by hand"
        )
        agent.select_option("#release-reason", "documents_checked")
        agent.click("#release")
        assert wait_for(lambda: len(simulator.relay_pulses) == 2, TIMEOUT)
        expect(instruction).to_have_text("Please proceed")
        simulator.set_door(True)
        simulator.set_door(False)
        expect(agent.locator("#count-boarded")).to_have_text("2")
        expect(agent.locator("#count-manual_checks")).to_have_text("1")

        log_path = config.boarding_log_path
        assert wait_for(
            lambda: log_path.exists() and len(log_path.read_text().splitlines()) >= 3, TIMEOUT
        )
        records = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert [r["outcome"] for r in records] == ["granted", "referred", "manual_check"]
        assert [(r["agent_id"], r["agent_reason"]) for r in records] == [
            (None, None),
            (AGENT, "not_boarding"),
            (AGENT, "documents_checked"),
        ]
        assert NAME not in log_path.read_text()

        families = {
            f.name: f for f in text_string_to_metric_families(httpx.get(url + "/metrics").text)
        }
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values()
            for s in f.samples
        }
        assert samples[("gate_travellers_total", (("outcome", "granted"),))] == 1
        assert samples[("gate_capture_seconds_count", ())] == 1
        assert samples[("gate_last_verify_success_timestamp_seconds", ())] > 0
        assert samples[("gate_link_up", (("link", "mcu"),))] == 1
        assert samples[("gate_agent_actions_total", (("action", "release"),))] == 1
    finally:
        stop.set()
        service.join(TIMEOUT)
        scanner.close()
        simulator.stop()
    assert results == [EXIT_OK]


def test_the_matcher_client_certificate_cannot_serve_the_screens(
    tmp_path, holders, pki, caplog
) -> None:
    """A technician points [screens] at the device's matcher certificate (clientAuth only):
    the service refuses to start with the screens' exit code and the gate stays shut."""
    key = os.urandom(32)
    simulator = Simulator(key).start()
    scanner = Scanner()
    try:
        path = _config(tmp_path, holders, pki.root, simulator, key, scanner)
        text = path.read_text().replace(
            "[screens]\nport = 0\n",
            f'[screens]\nport = 0\ncertificate = "{pki.device_cert}"\nkey = "{pki.device_key}"\n',
        )
        path.write_text(text)
        config = load_config(path)
        code = run_service(config, threading.Event(), open_camera=lambda _: ReplaySource([]))
        assert code == ScreensError.exit_code == 8
        status = read_status(config.status_path)
        assert status["service"] == "start-up failed" and status["screens"] is None
        assert "not for TLS servers" in caplog.text
        assert simulator.relay_pulses == [] and not simulator.relay_open
    finally:
        scanner.close()
        simulator.stop()

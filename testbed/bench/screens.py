"""`gatectl bench screens`: the capture loop's vision time with the screens closed and open.

The real capture code (``FrameSelector``: BlazeFace, the quality gate and the rules) runs
on 720p frames of a traveller, paced at 30 frames a second like a camera, with thresholds
no frame can pass so every frame is processed. Three phases, the same frames each:

* ``closed``: no screens at all (no progress listener, no web server);
* ``served``: the lane board listens and the web server runs, no page is open;
* ``open``: the traveller display and a signed-in agent station follow in headless
  Chromium (a separate process, as the kiosk's browser is).

Vision time per frame is from the end of one camera read to the start of the next:
detection, quality and the progress hand-off, never the pacing sleep. Figures on a busy
shared machine are noisy: compare phases of one run, and re-run on a quiet one.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from appliance.gate.agents import AgentCredentials, PinAuthenticator, hash_pin
from appliance.gate.machine import Event, GateController
from appliance.paths import demo_assets_dir
from appliance.screens.board import LaneBoard, LaneIdentity
from appliance.screens.metrics import GateMetrics
from appliance.screens.pages import ScreenParts, build_app
from appliance.screens.server import ScreenServer
from appliance.screens.settings import ScreenSettings
from appliance.vision.camera import ReplaySource
from appliance.vision.detectors import create_detector
from appliance.vision.quality import QualityThresholds
from appliance.vision.selection import FrameSelector
from gate_contract.progress import SILENT, Progress
from testbed.testing import FakeLink

FPS = 30.0
NEVER_PASSES = QualityThresholds(min_inter_eye_px=10_000.0, hard_min_inter_eye_px=10_000.0)
CHROMIUM = "/usr/lib/chromium/chromium"


class _PacedFrames:
    """Frames from memory at ``fps``; records the time the consumer spent between reads."""

    def __init__(self, frames: list[np.ndarray], count: int, fps: float = FPS) -> None:
        self._frames = frames
        self._left = count
        self._period = 1.0 / fps
        self._buffer = np.empty_like(frames[0])
        self._returned_at: float | None = None
        self._due = time.perf_counter()
        self.vision_ms: list[float] = []

    def read(self) -> np.ndarray | None:
        now = time.perf_counter()
        if self._returned_at is not None:
            self.vision_ms.append((now - self._returned_at) * 1000)
        if self._left == 0:
            return None
        self._due += self._period
        if self._due > now:
            time.sleep(self._due - now)
        else:
            self._due = now
        np.copyto(self._buffer, self._frames[self._left % len(self._frames)])
        self._left -= 1
        self._returned_at = time.perf_counter()
        return self._buffer

    def close(self) -> None:
        pass


def _frames() -> list[np.ndarray]:
    scene = demo_assets_dir() / "scenes" / "booked-traveller.avi"
    if not scene.exists():
        from testbed.demo import _scene_videos

        _scene_videos()
    source = ReplaySource(scene)
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame.copy())
    source.close()
    return frames


def _run(frames, detector, count: int, board: LaneBoard | None) -> list[float]:
    source = _PacedFrames(frames, count)
    selector = FrameSelector(detector, NEVER_PASSES, window_frames=count)
    if board is not None:
        selector.add_observer(board.capture_progress)
    selector.select(source)
    return source.vision_ms


def _figures(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[int(len(ordered) * 0.99) - 1], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


def bench_screens(frames_per_phase: int = 300, progress: Progress = SILENT) -> dict:
    """The vision time of each frame in three phases: no screens, screens served, a
    display and an agent station open in Chromium. The bar moves between phases only,
    never on the timed thread in the middle of one."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"bench screens: no Chromium at {CHROMIUM} (apt-get install chromium)")
    frames = _frames()
    detector = create_detector()
    _run(frames, detector, 30, None)  # warm the detector up

    link = FakeLink()
    gate = GateController(link)
    board = LaneBoard(
        LaneIdentity("gate-bench", "B42", "BA0283 2026-11-25 LAX", pass_first=True),
        min_inter_eye_px=NEVER_PASSES.min_inter_eye_px,
        zone_width=1.0,
    )
    board.follow(gate)
    gate.start()
    gate.fire(Event.PASS_SCANNED, "bench")  # capturing: the board takes every frame
    pin = "482913"
    settings = ScreenSettings(port=0)
    credentials = AgentCredentials(PinAuthenticator({"BENCH": hash_pin(pin)}))
    app = build_app(ScreenParts(board, credentials, None, GateMetrics(), settings))

    result: dict = {"frames_per_phase": frames_per_phase, "fps": FPS}
    phases = progress.bar("phases", total=3, unit="phase")
    with phases:
        phases.set_postfix_str("screens closed")
        result["closed_ms"] = _figures(_run(frames, detector, frames_per_phase, None))
        phases.update()
        server = ScreenServer(app, settings, board).start()
        try:
            phases.set_postfix_str("screens served")
            result["served_ms"] = _figures(_run(frames, detector, frames_per_phase, board))
            phases.update()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                display = browser.new_context().new_page()
                display.goto(server.url + "/")
                station = browser.new_context().new_page()
                station.goto(server.url + "/agent")
                station.fill("#agent_id", "BENCH")
                station.fill("#credential", pin)
                station.click("#sign-in")
                station.locator("#phase").wait_for()
                phases.set_postfix_str("display and station open")
                before = board.snapshot(("seq",))[0]
                result["open_ms"] = _figures(_run(frames, detector, frames_per_phase, board))
                result["states_published_open"] = board.snapshot(("seq",))[0] - before
                phases.update()
                browser.close()
        finally:
            server.close()
            gate.close()
    result["open_minus_closed_p50_ms"] = round(
        result["open_ms"]["p50"] - result["closed_ms"]["p50"], 2
    )
    return result


__all__ = ["CHROMIUM", "FPS", "NEVER_PASSES", "bench_screens"]

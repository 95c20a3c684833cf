"""``[vision] face_exposure_ev``: read and checked like every other key, and the service's
parts attach the face-metered exposure to the capture only when the camera has exposure
control and the key is not 0. ``build_parts`` runs for real here: the gate MCU is the
simulator on a pty, the detector the real model; the matcher is unreachable (the start
does not wait for it), and the camera is the test's own."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.errors import ConfigError
from appliance.service.config import load_config
from appliance.service.parts import Closeable, ServiceParts, build_parts, shut_down
from appliance.vision.camera import place_in_canvas
from appliance.vision.tone import DARK_FACE_MEAN
from firmware_bridge.simulator import Simulator
from tests.support import StillCamera, unit_config

KEY = "face_exposure_ev = 1.0"


def _set(path: Path, line: str) -> Path:
    text = path.read_text()
    assert KEY in text, "the example documents face_exposure_ev with its default"
    path.write_text(text.replace(KEY, line, 1))
    return path


def test_the_default_is_one_stop(example: Path) -> None:
    assert load_config(example).vision.face_exposure_ev == 1.0
    _set(example, "")  # left out: the default too
    assert load_config(example).vision.face_exposure_ev == 1.0


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("0.0", 0.0), ("0.5", 0.5), ("2", 2.0)])
def test_values_from_zero_to_two_stops_are_accepted(example: Path, text: str, value) -> None:
    _set(example, f"face_exposure_ev = {text}")
    assert load_config(example).vision.face_exposure_ev == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("-0.5", "out of range"),
        ("2.01", "out of range"),
        ("8", "out of range"),
        ("nan", "finite"),
        ("inf", "finite"),
        ('"1"', "must be a number"),
        ("true", "must be a number"),
    ],
)
def test_values_outside_are_one_clear_config_error(example: Path, text: str, why: str) -> None:
    _set(example, f"face_exposure_ev = {text}")
    with pytest.raises(ConfigError, match=rf"vision\.face_exposure_ev.*{why}") as info:
        load_config(example)
    assert "\n" not in str(info.value)


def test_the_environment_can_turn_it_off(example: Path, monkeypatch) -> None:
    monkeypatch.setenv("GATE_CFG__VISION__FACE_EXPOSURE_EV", "0")
    assert load_config(example).vision.face_exposure_ev == 0.0
    monkeypatch.setenv("GATE_CFG__VISION__FACE_EXPOSURE_EV", "3")
    with pytest.raises(ConfigError, match=re.escape("vision.face_exposure_ev")):
        load_config(example)


# --- build_parts ------------------------------------------------------------------------


class DarkCamera(StillCamera):
    """A camera showing a backlit traveller (the face recorded dark) for ``count`` frames;
    with ``control`` it has exposure compensation and records what it is asked for."""

    def __init__(self, scene: np.ndarray, count: int, *, control: bool) -> None:
        super().__init__(scene, count)
        self.requests: list[float] = []
        self.controls_exposure = control
        if control:
            self.set_exposure_compensation = self.requests.append


@pytest.fixture(scope="module")
def backlit(demo_photos: Path) -> np.ndarray:
    image = cv2.imread(str(demo_photos / "obama2.jpg"))
    portrait = cv2.resize(image, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    return place_in_canvas((portrait * 0.35).astype(np.uint8), (1280, 720))


@pytest.fixture(scope="module")
def simulator() -> Iterator[tuple[Simulator, bytes]]:
    key = os.urandom(32)
    running = Simulator(key).start()
    yield running, key
    running.stop()


@pytest.fixture
def build(tmp_path: Path, pki, simulator):
    """``build(face_exposure_ev, camera)``: the service's parts around ``camera``."""
    port, key = simulator[0].port, simulator[1]
    closers: list[Closeable] = []

    def parts(face_exposure_ev: float, camera: DarkCamera) -> ServiceParts:
        config = load_config(
            unit_config(
                tmp_path,
                matcher_target="127.0.0.1:9",  # nobody there: the session keeper retries
                pki_dir=pki.root,
                serial_port=port,
                relay_key=key,
                camera_source="opencv:0",
                matcher={"deadline_s": 0.1},  # each attempt gives up at once
                vision={"steady_frames": 8, "face_exposure_ev": face_exposure_ev},
            )
        )
        return build_parts(config, closers, lambda spec: camera)

    yield parts
    shut_down(closers)


def look(parts: ServiceParts, frames: int) -> None:
    """The capture looks at ``frames`` frames of the camera (no capture decided yet)."""
    parts.pipeline.selector.select(parts.source, max_frames=frames)


@pytest.mark.parametrize(("face_exposure_ev", "asked"), [(0.5, [0.5]), (0.0, [])])
def test_the_service_asks_a_camera_with_exposure_control_for_more_light(
    build, backlit: np.ndarray, face_exposure_ev: float, asked: list[float]
) -> None:
    """face_exposure_ev is the cap, and reached; 0 turns the control off."""
    camera = DarkCamera(backlit, 20, control=True)
    parts = build(face_exposure_ev, camera)
    seen = []
    parts.pipeline.on_capture_progress(seen.append)
    look(parts, 6)
    assert len(seen) == 6 and all(p.face_grey < DARK_FACE_MEAN[1] for p in seen)
    assert camera.requests == asked


def test_a_camera_without_exposure_control_gets_no_controller(build, backlit) -> None:
    """A source that passes requests on to a device without the control (an OpenCV
    camera behind the pump) is never asked: the gate would log changes never made."""
    camera = DarkCamera(backlit, 20, control=True)
    camera.controls_exposure = False
    parts = build(1.0, camera)
    look(parts, 6)  # the capture runs as before
    assert camera.requests == []

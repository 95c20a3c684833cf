"""Fixtures of the vision tests: a copy of the prepared models, and a stand-in for the
Pi camera's ``picamera2`` module."""

from __future__ import annotations

import importlib.machinery
import shutil
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from appliance.paths import models_dir


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The prepared models and their manifest, copied to a folder the test may spoil."""
    target = tmp_path / "models"
    shutil.copytree(models_dir(), target)
    return target


class World(types.SimpleNamespace):
    """What the fake ``picamera2`` module did: every camera opened, in order."""

    instances: list
    fail_next_capture: int
    refuse_controls: int
    frames: int
    seen_rgb: tuple[int, int, int] | None  # what the sensor sees (None: a grey count)


# How ``capture_array`` lays out a pixel for each format, as (R, G, B) indices
# (Picamera2 manual, appendix A: libcamera's names follow little-endian words).
PICAMERA2_LAYOUTS = {"RGB888": (2, 1, 0), "BGR888": (0, 1, 2), "XRGB8888": (2, 1, 0, None)}


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> World:
    """A ``picamera2`` module whose ``Picamera2`` records, per camera, what was done to it
    in order (``events``: ("controls", dict, thread id, thread name) and ("capture", n))."""
    world = World(instances=[], fail_next_capture=0, refuse_controls=0, frames=0, seen_rgb=None)

    class Picamera2:
        def __init__(self) -> None:
            self.started = self.closed = False
            self.events: list[tuple] = []
            world.instances.append(self)

        def create_video_configuration(self, main: dict) -> dict:
            return {"main": main}

        def configure(self, config: dict) -> None:
            self.size = config["main"]["size"]
            self.layout = PICAMERA2_LAYOUTS[config["main"]["format"]]

        def start(self) -> None:
            self.started = True

        def set_controls(self, controls: dict) -> None:
            if world.refuse_controls:
                world.refuse_controls -= 1
                raise RuntimeError("Control ExposureValue is not advertised by libcamera")
            thread = threading.current_thread()
            self.events.append(("controls", dict(controls), thread.ident, thread.name))

        def capture_array(self, stream: str) -> np.ndarray:
            assert stream == "main"
            if world.fail_next_capture:
                world.fail_next_capture -= 1
                raise RuntimeError("Camera frontend has timed out!")
            world.frames += 1
            self.events.append(("capture", world.frames))
            width, height = self.size
            rgb = world.seen_rgb or (world.frames % 250 + 1,) * 3
            pixel = [255 if i is None else rgb[i] for i in self.layout]
            return np.full((height, width, len(pixel)), pixel, np.uint8)

        @property
        def controls(self) -> list[dict]:
            return [event[1] for event in self.events if event[0] == "controls"]

        def stop(self) -> None:
            self.started = False

        def close(self) -> None:
            self.closed = True

    module = types.ModuleType("picamera2")
    module.__spec__ = importlib.machinery.ModuleSpec("picamera2", None)
    module.Picamera2 = Picamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return world

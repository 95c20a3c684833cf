"""[vision]: the capture keys are read and checked like every other key, and reach the
service's detector and selection rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.service.config import VisionConfig, load_config
from appliance.service.parts import vision_parts
from appliance.vision.detectors.tracking import TrackingDetector
from tests.support import REPO

EXAMPLE = REPO / "systemd" / "gate-appliance.toml.example"


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_example_documents_every_vision_key_with_its_default(example: Path) -> None:
    text = EXAMPLE.read_text()
    for key in VisionConfig.__dataclass_fields__:
        assert re.search(rf"\n(# )?{key} = ", text), f"[vision] {key} is not in the example"
    assert load_config(example).vision == VisionConfig()


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("tracking = true", 'tracking = "yes"', "vision.tracking"),
        ("tracking = true", "tracking = 1", "vision.tracking"),
        ("exposure_correction = true", "exposure_correction = 0", "vision.exposure_correction"),
        ("steady_frames = 2", "steady_frames = 0", "vision.steady_frames"),
        ("steady_frames = 2", "steady_frames = 2.5", "vision.steady_frames"),
        ("steady_frames = 2", "steady_frames = 31", "vision.steady_frames"),
        ("capture_window_frames = 45", "capture_window_frames = 3\nsteady_frames = 4",
         "vision.steady_frames"),
        ("tracking = true", "tracking = true\ntracker = true", "'tracker' in [vision]"),
        ("capture_attempts = 2", "capture_attempts = 0", "vision.capture_attempts"),
        ("capture_attempts = 2", "capture_attempts = 4", "vision.capture_attempts"),
    ],
)  # fmt: skip
def test_bad_vision_values_name_the_key(example: Path, old: str, new: str, named: str) -> None:
    if "\nsteady_frames = 4" in new:
        _edit(example, "steady_frames = 2", "")
    _edit(example, old, new)
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(example)


def test_values_and_environment_overrides_reach_the_capture(example, monkeypatch) -> None:
    _edit(example, "steady_frames = 2", "steady_frames = 3")
    _edit(example, "capture_attempts = 2", "capture_attempts = 1")
    monkeypatch.setenv("GATE_CFG__VISION__TRACKING", "false")
    monkeypatch.setenv("GATE_CFG__VISION__EXPOSURE_CORRECTION", "false")
    vision = load_config(example).vision
    assert (vision.tracking, vision.exposure_correction, vision.steady_frames) == (
        False,
        False,
        3,
    )
    detector, rules = vision_parts(vision)
    assert not isinstance(detector, TrackingDetector)
    assert rules.steady_frames == 3 and not rules.exposure_correction and rules.attempts == 1
    detector, rules = vision_parts(VisionConfig())
    assert isinstance(detector, TrackingDetector) and detector.shadow_gamma is not None
    assert rules.steady_frames == 2 and rules.exposure_correction and rules.attempts == 2

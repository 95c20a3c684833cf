"""The swapped-colour warning: skin's hue on real photos, as they are and with red and
blue swapped, and the run of blue faces that makes one warning."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from appliance.vision.camera import place_in_canvas
from appliance.vision.colour_order import (
    BLUE_SIDE,
    SKIN_FACE_HUES,
    ColourOrderWatch,
    face_hue,
)

PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg")


@pytest.fixture(scope="module")
def frames_and_faces(detector, demo_photos):
    """(frame, its face) for each photo: as it is, and with red and blue swapped."""
    normal, swapped = [], []
    for name in PHOTOS:
        frame = place_in_canvas(cv2.imread(str(demo_photos / name)), (1280, 720))
        for kept, image in ((normal, frame), (swapped, np.ascontiguousarray(frame[:, :, ::-1]))):
            faces = detector.detect(image)
            assert faces, f"no face found in {name}"
            kept.append((image, max(faces, key=lambda f: f.area)))
    return normal, swapped


def test_skin_has_skin_hues_and_blue_ones_when_red_and_blue_are_swapped(frames_and_faces):
    normal, swapped = frames_and_faces
    for frame, face in normal:
        assert SKIN_FACE_HUES[0] <= face_hue(frame, face) <= SKIN_FACE_HUES[1]
    for frame, face in swapped:
        assert BLUE_SIDE[0] <= face_hue(frame, face) <= BLUE_SIDE[1]


def test_a_grey_frame_or_a_colourless_face_tells_nothing(frames_and_faces):
    frame, face = frames_and_faces[0][0]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert face_hue(grey, face) is None
    assert face_hue(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), face) is None


def warnings(caplog) -> int:
    return sum("red and blue look swapped" in r.getMessage() for r in caplog.records)


def test_a_run_of_blue_faces_warns_once_and_a_skin_face_ends_the_run(frames_and_faces, caplog):
    normal, swapped = frames_and_faces
    watch = ColourOrderWatch(run=3)
    with caplog.at_level(logging.WARNING, logger="gate.camera"):
        for frame, face in swapped[:2]:
            watch.observe(frame, face)
        watch.observe(*normal[0])  # one face of skin's hue: the run starts again
        for frame, face in swapped[:2]:
            watch.observe(frame, face)
        assert warnings(caplog) == 0
        for frame, face in swapped * 2:
            watch.observe(frame, face)
        assert warnings(caplog) == 1, "one warning for one run, not one per face"
        watch.observe(*normal[1])
        for frame, face in swapped:
            watch.observe(frame, face)
        assert warnings(caplog) == 2, "a new run after a skin face warns again"

"""The scene generator's people: the face a scene shows is the person its photo is of,
whole. Built from the packaged demo photos and the real portrait detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from testbed.scene_generator.people import (
    PORTRAIT,
    _matte,
    as_portrait,
    main_face,
    portrait_detector,
)


def portrait(demo_photos: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(demo_photos / name))
    try:
        return as_portrait(image)
    finally:
        image.fill(0)


def centre_of(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_the_subject_is_the_centred_face_not_a_bigger_one_at_the_edge(demo_photos):
    """An LFW crowd shot: the subject in the middle, a bystander's bigger face at the
    top-left corner (as in faces-dev's Charles_Moose_0010, where the scene showed the
    bystander under the subject's name)."""
    subject = portrait(demo_photos, "biden.jpg")
    bystander = portrait(demo_photos, "obama.jpg")
    small = cv2.resize(subject, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    top = (PORTRAIT - small.shape[0]) // 2
    bottom = PORTRAIT - small.shape[0] - top
    shot = cv2.copyMakeBorder(small, top, bottom, top, bottom, cv2.BORDER_REPLICATE)
    bigger = cv2.resize(bystander, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = main_face(bigger).box
    dx, dy = round(50 - (x0 + x1) / 2), round(45 - (y0 + y1) / 2)  # its centre at (50, 45)
    margin = 0.12 * (x1 - x0)
    ys, xs = np.mgrid[0:PORTRAIT, 0:PORTRAIT]
    sy, sx = ys - dy, xs - dx
    inside = (sy >= max(0, y0 - margin)) & (sy < min(bigger.shape[0], y1 + margin))
    inside &= (sx >= max(0, x0 - margin)) & (sx < min(bigger.shape[1], x1 + margin))
    shot[inside] = bigger[sy[inside], sx[inside]]
    try:
        faces = portrait_detector().detect(shot)
        assert len(faces) == 2, "both faces must be found for the test to mean anything"
        assert centre_of(max(faces, key=lambda f: f.area).box)[0] < 70, "the bystander's is bigger"
        cx, cy = centre_of(main_face(shot).box)
        assert abs(cx - PORTRAIT / 2) < 25 and abs(cy - PORTRAIT / 2) < 25
    finally:
        for image in (subject, bystander, small, bigger, shot):
            image.fill(0)


@pytest.mark.parametrize("name", ["biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg"])
def test_the_cut_out_keeps_the_whole_face_when_the_hair_is_the_wall_colour(demo_photos, name):
    """White hair on a pale wall, or a headband at the brow: GrabCut had cut the person
    through the forehead. Everything above the brow is painted the wall's colour."""
    photo = portrait(demo_photos, name)
    try:
        face = main_face(photo)
        right_eye, left_eye, _, mouth = face.keypoints[:4]
        eyes = (right_eye + left_eye) / 2
        eye_to_mouth = float(mouth[1] - eyes[1])
        brow = round(eyes[1] - 0.3 * eye_to_mouth)
        wall = np.array([214, 220, 222], np.uint8)
        photo[:brow] = wall
        x0, _, x1, _ = face.box
        photo[:, : max(0, round(x0 - 0.1 * (x1 - x0)))] = wall
        photo[:, round(x1 + 0.1 * (x1 - x0)) :] = wall
        matte, _ = _matte(photo, face, np.random.default_rng(7))
        face_core = matte[brow + 1 : round(mouth[1]), round(right_eye[0]) : round(left_eye[0])]
        assert face_core.min() > 0.9, f"the cut-out lost part of the face ({face_core.min():.2f})"
    finally:
        photo.fill(0)


def test_only_black_wedges_at_the_border_are_cut_not_dark_parts_of_the_face(demo_photos):
    """LFW's deep funnelling leaves black wedges at a photo's corners: those are cut. A
    near-black open mouth or pupil inside the face is the person, and had become a hole."""
    photo = portrait(demo_photos, "biden.jpg")
    try:
        face = main_face(photo)
        mouth = tuple(round(v) for v in face.keypoints[3])
        cv2.circle(photo, mouth, 5, (3, 3, 3), -1)  # a dark open mouth
        corner = np.array([[0, 0], [60, 0], [0, 60]], np.int32)
        cv2.fillPoly(photo, [corner], (0, 0, 0))  # a funnelling wedge
        matte, _ = _matte(photo, face, np.random.default_rng(7))
        assert matte[mouth[1], mouth[0]] > 0.9, "the mouth was cut out of the face"
        assert matte[:40, :15].max() == 0.0 and matte[:15, :40].max() == 0.0
    finally:
        photo.fill(0)

"""The service's face finder on a close crop: a gate sends the face with a small margin."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from matching_service.gallery import Gallery
from matching_service.recognizers.face_finder import SECOND_LOOK_FILL, FaceFinder
from tests.support import require_recognizer


@pytest.fixture(scope="module")
def mobilefacenet():
    return require_recognizer("mobilefacenet")


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _close_crop(image: np.ndarray, box, margin: float = 0.1, side: int = 300):
    """The face with ``margin`` of its width on each side, as a ``side`` px square, and
    the face's box in it."""
    x0, y0, x1, y1 = box
    half = (x1 - x0) * (0.5 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(cx - half), int(cy - half)
    crop = image[top : int(cy + half), left : int(cx + half)]
    scale = side / crop.shape[1]
    face = [(x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale]
    return cv2.resize(
        crop, (side, round(crop.shape[0] * scale)), interpolation=cv2.INTER_AREA
    ), face


def test_a_face_that_fills_the_crop_is_found_by_a_second_look(mobilefacenet, demo_photos):
    finder = FaceFinder()
    photo = cv2.imread(str(demo_photos / "obama.jpg"))
    crop, face = _close_crop(photo, finder.largest(photo))
    # BlazeFace full range misses a face this large in its input: the reason for the second look.
    assert finder._search(crop, 1.0) == []
    found = finder.largest(crop)
    assert found is not None and _iou(found, face) > 0.6, (found, face)
    assert 0 < SECOND_LOOK_FILL < 1


def test_a_close_crop_still_verifies_as_its_person(mobilefacenet, demo_photos):
    photo = cv2.imread(str(demo_photos / "obama.jpg"))
    crop, _ = _close_crop(photo, FaceFinder().largest(photo))
    document = mobilefacenet.encode(cv2.imread(str(demo_photos / "obama2.jpg")))
    other = mobilefacenet.encode(cv2.imread(str(demo_photos / "biden.jpg")))
    live = mobilefacenet.encode(crop)
    info = mobilefacenet.info
    threshold = Gallery(":memory:", info).threshold_1to1(1)
    assert info.distances(live, document[None])[0] <= threshold
    assert info.distances(live, other[None])[0] > threshold

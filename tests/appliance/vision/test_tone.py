"""The exposure correction's tone curve."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.vision.tone import MIN_GAMMA, apply_gamma, face_gamma


def test_only_dark_faces_get_a_curve_and_darker_ones_a_stronger_one() -> None:
    assert face_gamma(8.0) == 1.0  # too dark: lifting it would only lift noise
    assert face_gamma(90.0) == 1.0  # exposed well enough
    gammas = [face_gamma(mean) for mean in (16.0, 30.0, 45.0, 60.0, 69.0)]
    assert gammas == sorted(gammas) and all(MIN_GAMMA <= g < 1.0 for g in gammas)


@pytest.mark.parametrize("mean", [20.0, 40.0, 60.0])
def test_the_curve_brings_a_dark_face_near_the_middle_grey(mean: float) -> None:
    face = np.full((10, 10), round(mean), np.uint8)
    lifted = apply_gamma(face.copy(), face_gamma(mean))
    assert 90 <= lifted.mean() <= 130 or face_gamma(mean) == MIN_GAMMA


def test_black_and_white_stay_and_a_view_is_changed_in_place() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :3] = 255
    view = image[1:3, 2:5]
    view[...] = 40
    apply_gamma(view, 0.5)
    assert (image[1:3, 2:5] > 40).all(), "the curve wrote into the view's own memory"
    assert image[0, 0, 0] == 255 and image[0, 5, 0] == 0
    assert apply_gamma(image, 1.0) is image

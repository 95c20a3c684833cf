"""Not the traveller: a detection whose middle has colours no skin has.

BlazeFace answers for face-like shapes, whatever their colours. On the scene bench it
found a face in skimage's colour wheel among the clutter images (the short-range model,
scores 0.52-0.69 over 30 frames), and that "face" was sharp and frontal enough to pass
every quality measure and be sent. Skin is a narrow band of hues, so the middle half of
a real face's box (cheeks, nose, eyes) is never very colourful once the light's own
colour cast is taken out (the mean colour is measured from the scene's, so amber or red
lighting does not make every face "colourful"). Colourfulness is Hasler and Süsstrunk's
measure ("Measuring colourfulness in natural images", 2003): the spread and the mean of
the two opponent channels. Measured: faces-dev's 1223 detected faces (its photos, as
they are and pasted on a grey 720p canvas: press photos, more saturated than a gate
camera's) reach at most 80.1 (median 30), and the colour wheel is at least 95.5 in every
frame of the scene it was sent in.

Such a detection is never the traveller: the tracker does not follow it and the selector
does not measure or send it (``appliance.vision.selection``). It is still a face found,
so it still counts as someone else in view (a companion, someone nearer, a lane that is
not clear): paint on a second person's face must not hide them from those rules.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.vision.detectors.base import Face, face_region
from gate_contract.image_noise import middle_half

MAX_SKIN_COLOURFULNESS = 85.0
_SAMPLE_PX = 48  # the middle is read on about this many pixels a side
_SCENE_STEP = 16  # the scene's colour cast is read on every 16th pixel each way


def _opponent(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations of the red-green and yellow-blue opponent channels
    of a BGR uint8 image (each a 2-vector); every derived buffer is zeroized."""
    pixels = image.astype(np.float32)
    channels = cv2.split(pixels)
    blue, green, red = channels
    red_green = cv2.subtract(red, green)
    yellow = cv2.addWeighted(red, 0.5, green, 0.5, 0.0)
    yellow_blue = cv2.subtract(yellow, blue)
    opponent = cv2.merge([red_green, yellow_blue])
    try:
        mean, spread = cv2.meanStdDev(opponent)
    finally:
        for derived in (pixels, *channels, red_green, yellow, yellow_blue, opponent):
            derived.fill(0)  # derived from face pixels: zeroized like them
    return mean[:, 0], spread[:, 0]


def scene_cast(frame: np.ndarray) -> np.ndarray:
    """The frame's mean opponent colour: the light's cast (near 0 under white light)."""
    return _opponent(frame[::_SCENE_STEP, ::_SCENE_STEP])[0]


def colourfulness(image: np.ndarray, cast: np.ndarray | None = None) -> float:
    """Hasler-Süsstrunk colourfulness of a BGR uint8 image (0: grey; vivid scenes 100+);
    with ``cast``, its mean colour is measured from the scene's, not from grey."""
    if image.size == 0:
        return 0.0
    mean, spread = _opponent(image)
    if cast is not None:
        mean = mean - cast
    return float(np.hypot(*spread) + 0.3 * np.hypot(*mean))


def skin_coloured(frame: np.ndarray, face: Face, cast: np.ndarray | None = None) -> bool:
    """Could the middle of ``face``'s box in ``frame`` be skin (not too colourful)?
    ``cast``: ``scene_cast(frame)``, measured here if not given."""
    middle = middle_half(face_region(frame, face))
    if middle.size == 0:
        return True  # nothing to judge by
    step = max(1, min(middle.shape[:2]) // _SAMPLE_PX)
    cast = scene_cast(frame) if cast is None else cast
    return colourfulness(middle[::step, ::step], cast) <= MAX_SKIN_COLOURFULNESS


def only_skin(frame: np.ndarray, faces: list[Face]) -> list[Face]:
    """``faces`` without the detections that cannot be skin (grey frames pass as they are)."""
    if not faces or frame.ndim != 3 or frame.shape[2] != 3:
        return faces
    cast = scene_cast(frame)
    return [face for face in faces if skin_coloured(frame, face, cast)]


__all__ = ["MAX_SKIN_COLOURFULNESS", "colourfulness", "only_skin", "scene_cast", "skin_coloured"]

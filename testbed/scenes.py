"""Camera scenes for the demo, made from still photos: a traveller walking up to the gate.

Each scene is a short 1280×720 video: an empty lane, then the person approaching (the
face grows until it is large enough to match), then standing still. They are written
once at set-up from photos that packages ship; the appliance then replays them through
OpenCV exactly as it would read a camera.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from appliance.vision.camera import place_in_canvas
from appliance.vision.detectors.base import Face
from appliance.vision.detectors.onnx_runtime import OnnxFaceDetector

FRAME_SIZE = (1280, 720)
FPS = 30
TARGET_FACE_PX = 150  # detected face width when the traveller stands at the gate


def _approach(photo: np.ndarray, face_width: float, frames: int) -> Iterator[np.ndarray]:
    """Frames of ``photo`` growing from far away to standing at the gate."""
    final = TARGET_FACE_PX / face_width
    for step in range(frames):
        scale = final * (0.35 + 0.65 * min(1.0, step / (frames * 0.6)))
        yield place_in_canvas(photo, FRAME_SIZE, scale)


def empty_lane(frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        noise = rng.integers(-6, 7, (FRAME_SIZE[1], FRAME_SIZE[0], 1), dtype=np.int16)
        yield np.clip(118 + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


def write_video(path: Path, frames: Iterator[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, FRAME_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write scene video {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


@functools.cache
def _portrait_detector() -> OnnxFaceDetector:
    return OnnxFaceDetector("short")  # portraits fill the image: the short-range model fits


def portrait_faces(portrait: np.ndarray) -> list[Face]:
    """The faces in a still photo, most confident first."""
    return sorted(_portrait_detector().detect(portrait), key=lambda f: -f.score)


def face_width(portrait: np.ndarray, name: str = "portrait") -> float:
    """Width in pixels of the face in a still photo (to scale it as a traveller's)."""
    faces = portrait_faces(portrait)
    if not faces:
        raise RuntimeError(f"no face found in {name}; re-run `make setup`")
    return faces[0].width


def traveller_scene(path: Path, photo_path: Path, frames: int = 24) -> None:
    photo = cv2.imread(str(photo_path))
    if photo is None:
        raise RuntimeError(f"cannot read {photo_path}")
    try:
        write_video(path, _approach(photo, face_width(photo, photo_path.name), frames))
    finally:
        photo.fill(0)


def empty_scene(path: Path, frames: int = 20) -> None:
    write_video(path, empty_lane(frames))


__all__ = [
    "FPS",
    "FRAME_SIZE",
    "TARGET_FACE_PX",
    "empty_lane",
    "empty_scene",
    "face_width",
    "portrait_faces",
    "traveller_scene",
    "write_video",
]

"""Camera sources behind one interface: replay (video file or image folder), OpenCV, picamera2.

A source hands out one freshly allocated BGR frame per ``read()``; the caller owns it
and zeroizes it when done, so no frame outlives its use inside a library buffer we
cannot reach. ``None`` means the source has ended (replay) or has no frame now.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class CameraError(RuntimeError):
    """A camera or replay input cannot be opened or read."""


class FrameSource(Protocol):
    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def place_in_canvas(
    image: np.ndarray, size: tuple[int, int], face_scale: float = 1.0
) -> np.ndarray:
    """Put a photo at the centre of a grey ``size`` (w, h) frame, as a camera would see it."""
    width, height = size
    canvas = np.full((height, width, 3), 118, np.uint8)
    scale = min(face_scale, width / image.shape[1], height / image.shape[0])
    if scale != 1.0:
        new_size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    y, x = (height - h) // 2, (width - w) // 2
    canvas[y : y + h, x : x + w] = image
    return canvas


class ReplaySource:
    """Replays a video file, or a folder or list of still images, through OpenCV.

    For stills, each image is shown for ``repeat`` frames (a traveller standing at the
    gate) and, when ``canvas`` is given, placed in a frame of that size.
    """

    def __init__(
        self,
        path: Path | Sequence[Path],
        *,
        canvas: tuple[int, int] | None = None,
        repeat: int = 1,
        face_scale: float = 1.0,
    ) -> None:
        self._video: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        self._canvas = canvas
        self._repeat = max(1, repeat)
        self._face_scale = face_scale
        self._shown = 0
        self._current: np.ndarray | None = None
        if isinstance(path, (str, Path)) and Path(path).is_file():
            self._video = cv2.VideoCapture(str(path))
            if not self._video.isOpened():
                raise CameraError(f"cannot open video {path}")
        elif isinstance(path, (str, Path)):
            folder = Path(path)
            if not folder.is_dir():
                raise CameraError(f"replay input {folder} is neither a video file nor a folder")
            self._images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            self._images = [Path(p) for p in path]

    def read(self) -> np.ndarray | None:
        if self._video is not None:
            ok, frame = self._video.read()
            return frame if ok else None
        if self._current is None or self._shown >= self._repeat:
            if self._current is not None:
                self._current.fill(0)
            if not self._images:
                self._current = None
                return None
            image_path = self._images.pop(0)
            image = cv2.imread(str(image_path))
            if image is None:
                raise CameraError(f"cannot read image {image_path}")
            if self._canvas:
                placed = place_in_canvas(image, self._canvas, self._face_scale)
                image.fill(0)
                image = placed
            self._current, self._shown = image, 0
        self._shown += 1
        return self._current.copy()

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
        if self._current is not None:
            self._current.fill(0)
            self._current = None


class OpenCVSource:
    """A live camera through OpenCV: device index, V4L2 path or stream URL."""

    def __init__(self, device: int | str, size: tuple[int, int] = (1280, 720)) -> None:
        self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            raise CameraError(f"cannot open camera {device!r}")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        return frame if ok else None

    def close(self) -> None:
        self._capture.release()


class Picamera2Source:
    """The Raspberry Pi camera; ``picamera2`` is a device-only extra, imported here lazily."""

    def __init__(self, size: tuple[int, int] = (1280, 720)) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError("picamera2 is not available (install the 'device' extra)") from exc
        self._camera = Picamera2()
        self._camera.configure(
            self._camera.create_video_configuration(main={"size": size, "format": "BGR888"})
        )
        self._camera.start()

    def read(self) -> np.ndarray | None:
        return self._camera.capture_array("main")

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()

"""A scene's exposure tracks as one camera with exposure control, for the capture bench.

A scene may be filmed at several exposure compensations (``testbed.scene_format``:
``video.avi`` at 0, ``video_ev+1.avi`` at +1 stop). :class:`ExposureTracks` reads them
all in step through ``ReplaySource`` and hands over the frame of the current track, so
``appliance.vision.exposure.FaceMeteredExposure`` can drive it as it drives the Pi
camera. A request takes effect ``settle_frames`` frames later, as a real auto-exposure
needs a few frames to converge; it goes to the nearest track there is (none brighter: the
camera cannot go brighter).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from appliance.vision.camera import ReplaySource
from testbed.scene_format import SceneFormatError

# libcamera's exposure loop settles in a few frames; 6 (0.2 s at 30 fps) is on the slow side
SETTLE_FRAMES = 6


class ExposureTracks:
    """``tracks``: video by stops (0 must be there). A ``FrameSource`` and an
    ``ExposureControl``; ``changes`` lists (frame, stops) of every switch made."""

    live = False
    controls_exposure = True

    def __init__(self, tracks: dict[float, Path], *, settle_frames: int = SETTLE_FRAMES) -> None:
        if 0.0 not in tracks:
            raise ValueError("the scene's own video (0 stops) is needed")
        if settle_frames < 0:
            raise ValueError("settle_frames must be >= 0")
        self.settle_frames = settle_frames
        self.ev = 0.0
        self.frames = 0  # frames handed over
        self.changes: list[tuple[int, float]] = []
        self._pending: tuple[float, int] | None = None  # (stops, from which frame)
        _check_alike(tracks)
        self._sources: dict[float, ReplaySource] = {}
        try:
            for ev, path in sorted(tracks.items()):
                self._sources[ev] = ReplaySource(path)
        except BaseException:
            self.close()
            raise

    def set_exposure_compensation(self, ev: float) -> None:
        if not math.isfinite(ev):
            raise ValueError(f"exposure compensation must be finite, not {ev}")
        nearest = min(self._sources, key=lambda track: (abs(track - ev), abs(track)))
        due = self.frames + 1 + self.settle_frames
        self._pending = None if nearest == self.ev else (nearest, due)

    def read(self) -> np.ndarray | None:
        frames = {ev: source.read() for ev, source in self._sources.items()}
        self.frames += 1
        if self._pending is not None and self.frames >= self._pending[1]:
            self.ev = self._pending[0]
            self._pending = None
            self.changes.append((self.frames, self.ev))
        chosen = frames.pop(self.ev)
        for frame in frames.values():
            if frame is not None:
                frame.fill(0)  # the tracks not shown are wiped as the camera's frames are
        return chosen

    def close(self) -> None:
        for source in self._sources.values():
            source.close()


def _check_alike(tracks: dict[float, Path]) -> None:
    """Every track has the scene video's frame size and length, or a ``SceneFormatError``."""
    shapes = {}
    for ev, path in tracks.items():
        capture = cv2.VideoCapture(str(path))
        try:
            shapes[ev] = tuple(
                int(capture.get(p))
                for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT,
                          cv2.CAP_PROP_FRAME_COUNT)
            )  # fmt: skip
        finally:
            capture.release()
    scene = shapes[0.0]
    for ev, shape in shapes.items():
        if shape != scene:
            raise SceneFormatError(
                f"exposure track {tracks[ev].name} is {shape[0]}x{shape[1]}, {shape[2]} frames;"
                f" the scene's video is {scene[0]}x{scene[1]}, {scene[2]} frames"
            )


__all__ = ["SETTLE_FRAMES", "ExposureTracks"]

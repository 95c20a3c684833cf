"""Camera sources behind one interface: replay (video file or image folder), OpenCV, picamera2.

A source hands out one freshly allocated BGR frame per ``read()``; the caller owns it
and zeroizes it when done, so no frame outlives its use inside a library buffer we
cannot reach. ``None`` means the source has ended (replay) or has no frame now.

Live cameras drop out (a loose USB cable, an RTSP camera rebooting), so they are used
behind ``ReconnectingSource``, which reopens them with exponential backoff and hands on
only 8-bit BGR frames (``bgr_frame``: a grey or 4-channel camera is converted, anything
else is a camera fault that says what arrived); a replay's end is a real end and is
never reopened. ``parse_camera_spec`` reads the spec language of the configuration,
``live_camera`` builds a reconnecting live camera.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from appliance.errors import CameraError

log = logging.getLogger("gate.camera")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}

# How long OpenCV may wait for a network stream to open or deliver a frame (ms), so a
# dead RTSP/HTTP camera turns into a failed read instead of a hang.
STREAM_TIMEOUT_MS = 5000


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


_URL_CREDENTIALS = re.compile(r"://[^/@\s]*@")


def redact(device: int | str) -> str:
    """A camera address fit for logs: credentials in a stream URL are removed."""
    return _URL_CREDENTIALS.sub("://***@", str(device))


def bgr_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as the vision stage takes it: 8-bit BGR, (H, W, 3).

    A grey camera (many gate cameras see in near infrared) and a 4-channel one (BGRX,
    picamera2's ``XRGB8888``) are converted; anything else is a ``CameraError`` naming
    what arrived, as the detector would otherwise find no face in it without a word. A
    frame converted or refused is wiped (the camera's array holds the traveller too).
    """
    if not isinstance(frame, np.ndarray):
        raise CameraError(f"camera gave a {type(frame).__name__}, not an image")
    shape = frame.shape
    channels = shape[2] if frame.ndim == 3 else 1 if frame.ndim == 2 else 0
    if frame.dtype == np.uint8 and channels == 3 and min(shape[:2]) > 0:
        return frame
    try:
        if frame.dtype != np.uint8:
            raise CameraError(f"camera gave {frame.dtype} frames; the vision stage takes 8-bit BGR")
        if channels not in (1, 4) or min(shape[:2]) == 0:
            raise CameraError(
                f"camera gave frames of shape {shape}; the vision stage takes BGR (H, W, 3)"
            )
        code = cv2.COLOR_GRAY2BGR if channels == 1 else cv2.COLOR_BGRA2BGR
        return cv2.cvtColor(frame, code)
    finally:
        frame.fill(0)


class ReplaySource:
    """Replays a video file, or a folder or list of still images, through OpenCV.

    For stills, each image is shown for ``repeat`` frames (a traveller standing at the
    gate) and, when ``canvas`` is given, placed in a frame of that size. With
    ``realtime_fps`` frames are paced to that rate (the first comes at once); by default
    they come as fast as they can be decoded. The end of a replay is a real end: ``read()``
    returns ``None`` from then on.
    """

    live = False

    def __init__(
        self,
        path: Path | Sequence[Path],
        *,
        canvas: tuple[int, int] | None = None,
        repeat: int = 1,
        face_scale: float = 1.0,
        realtime_fps: float | None = None,
    ) -> None:
        if realtime_fps is not None and not realtime_fps > 0:
            raise ValueError(f"realtime_fps must be positive, not {realtime_fps!r}")
        self._video: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        self._canvas = canvas
        self._repeat = max(1, repeat)
        self._face_scale = face_scale
        self._shown = 0
        self._current: np.ndarray | None = None
        self._period = 1.0 / realtime_fps if realtime_fps else None
        self._due: float | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], object] = time.sleep
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
        frame = self._next_frame()
        if frame is not None and self._period is not None:
            self._pace(self._period)
        return frame

    def _pace(self, period: float) -> None:
        now = self._clock()
        if self._due is None:
            self._due = now + period
            return
        if now < self._due:
            self._sleep(self._due - now)
            now = self._due
        # Running late (slow decode, slow consumer) does not cause a burst to catch up.
        self._due = max(self._due, now) + period

    def _next_frame(self) -> np.ndarray | None:
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
    """A camera through OpenCV: device index, V4L2 path, RTSP/HTTP URL or video file.

    Opens at construction (``CameraError`` if it cannot); ``read()`` returns ``None`` when
    OpenCV delivers no frame (device gone, stream stalled, end of a file). Use it behind
    ``ReconnectingSource`` to survive drop-outs.
    """

    def __init__(self, device: int | str, size: tuple[int, int] = (1280, 720)) -> None:
        self.device = device
        if isinstance(device, str) and "://" in device:
            self._capture = self._open_stream(device)
        else:
            self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"cannot open camera {redact(device)!r}")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        # Keep at most one frame queued inside the driver: the newest is what matters.
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    @staticmethod
    def _open_stream(url: str) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
        ]
        try:
            return cv2.VideoCapture(url, cv2.CAP_ANY, params)
        except cv2.error:  # a build without open parameters for this backend
            return cv2.VideoCapture(url)

    def read(self) -> np.ndarray | None:
        try:
            ok, frame = self._capture.read()
        except cv2.error as exc:
            raise CameraError(f"camera {redact(self.device)!r} read failed: {exc}") from exc
        return frame if ok else None

    def close(self) -> None:
        self._capture.release()


class Picamera2Source:
    """The Raspberry Pi camera; ``picamera2`` is a device-only extra, imported here lazily."""

    # libcamera names formats by the order of a little-endian word: its "RGB888" comes
    # out of ``capture_array`` as [B, G, R] per pixel, OpenCV's order, and "BGR888" as
    # [R, G, B] (Picamera2 manual, appendix A). "BGR888" would swap red and blue.
    FORMAT = "RGB888"

    def __init__(self, size: tuple[int, int] = (1280, 720)) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError("picamera2 is not available (install the 'device' extra)") from exc
        try:
            self._camera = Picamera2()
        except Exception as exc:  # no camera attached, or held by another process
            raise CameraError(f"cannot open the Pi camera: {exc}") from exc
        try:
            self._camera.configure(
                self._camera.create_video_configuration(main={"size": size, "format": self.FORMAT})
            )
            self._camera.start()
        except Exception as exc:
            self._camera.close()
            raise CameraError(f"cannot start the Pi camera: {exc}") from exc

    def set_exposure_compensation(self, ev: float) -> None:
        """Bias libcamera's auto-exposure by ``ev`` stops (its ``ExposureValue`` control)."""
        try:
            self._camera.set_controls({"ExposureValue": float(ev)})
        except Exception as exc:  # a camera that went away, or a control it lacks
            raise CameraError(f"Pi camera refused exposure compensation: {exc}") from exc

    def read(self) -> np.ndarray | None:
        try:
            return self._camera.capture_array("main")
        except Exception as exc:  # libcamera reports drop-outs with assorted exceptions
            raise CameraError(f"Pi camera read failed: {exc}") from exc

    def close(self) -> None:
        try:
            self._camera.stop()
        except Exception as exc:  # stopping a camera that already failed
            log.warning("stopping the Pi camera: %s", exc)
        self._camera.close()


class CameraState(enum.Enum):
    CONNECTING = "connecting"  # never delivered a frame yet
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"  # delivered frames before, lost the camera since
    CLOSED = "closed"


# libcamera's ExposureValue range, in stops
MAX_EXPOSURE_COMPENSATION = 8.0

# Failures a live camera is expected to have; anything else is a bug and propagates.
CAMERA_FAILURES = (CameraError, OSError, cv2.error)


class ReconnectingSource:
    """A live source that survives the camera dropping out.

    ``open_source`` opens the underlying source (raising ``CameraError``/``OSError`` if it
    cannot). When a read raises one of those or returns ``None``, the source is closed and
    reopened with exponential backoff (``backoff_initial`` doubling up to ``backoff_max``,
    reset once a frame arrives). The first open happens on the first ``read()``.

    Each ``read()`` makes at most one open attempt and returns a frame or ``None``
    ("no frame now"); the read that loses the camera returns ``None`` at once. By
    default it sleeps until that attempt is due (at most ``backoff_max``; the default
    sleep wakes early on ``close()``). With
    ``nonblocking=True`` it never sleeps: it returns ``None`` at once while the next
    attempt is not yet due, so the caller stays responsive.

    ``close()`` may be called from another thread than ``read()``.

    ``set_exposure_compensation`` returns at once (it may be called from another thread,
    and a stalled camera must not stall the caller): the reading thread gives it to the
    camera before its next read, and again to every camera opened after a drop-out. A
    camera without exposure control (an OpenCV device) ignores it.
    """

    live = True

    def __init__(
        self,
        open_source: Callable[[], FrameSource],
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        nonblocking: bool = False,
        controls_exposure: bool = False,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self._open_source = open_source
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.nonblocking = nonblocking
        self.controls_exposure = controls_exposure  # the cameras it opens have the control
        self._clock = clock
        self._closing = threading.Event()
        self._sleep = self._interruptible_sleep if sleep is time.sleep else sleep
        self._lock = threading.RLock()  # guards the underlying source
        self._source: FrameSource | None = None
        self._delay = backoff_initial
        self._next_attempt = clock()
        self._callbacks: list[Callable[[CameraState], object]] = []
        self.state = CameraState.CONNECTING
        self.reconnects = 0  # times streaming resumed after a drop-out
        self.attempts = 0  # open attempts, successful or not
        self.last_error: str | None = None
        self._exposure_wanted = 0.0  # stops, as last asked for
        self._exposure_applied = 0.0  # ... as the current camera has it

    @property
    def backoff(self) -> float:
        """The wait that the next failure (of a read or an open) will schedule."""
        return self._delay

    def on_state(
        self, callback: Callable[[CameraState], object]
    ) -> Callable[[CameraState], object]:
        """Call ``callback(new_state)`` on every state change (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def set_exposure_compensation(self, ev: float) -> None:
        if not math.isfinite(ev) or abs(ev) > MAX_EXPOSURE_COMPENSATION:
            limit = MAX_EXPOSURE_COMPENSATION
            raise ValueError(f"exposure compensation must be within ±{limit:g} EV, not {ev}")
        self._exposure_wanted = float(ev)

    def _apply_exposure(self, source: FrameSource) -> None:
        """Give the camera the compensation last asked for (lock held); a refusal is
        logged and not retried until the next request."""
        wanted = self._exposure_wanted
        self._exposure_applied = wanted
        control = getattr(source, "set_exposure_compensation", None)
        if control is None:
            return
        try:
            control(wanted)
        except CAMERA_FAILURES as exc:
            log.warning("camera refused exposure compensation %+.1f EV: %s", wanted, exc)

    def read(self) -> np.ndarray | None:
        if self._closing.is_set():
            return None
        with self._lock:
            source = self._source
        if source is None:
            source = self._connect()
            if source is None:
                return None
        with self._lock:
            if self._source is not source:  # closed meanwhile
                return None
            if self._exposure_applied != self._exposure_wanted:
                self._apply_exposure(source)
            try:
                frame = source.read()
            except CAMERA_FAILURES as exc:
                self._drop(f"{type(exc).__name__}: {exc}")
                return None
            if frame is None:
                self._drop("camera delivered no frame")
                return None
            try:
                frame = bgr_frame(frame)
            except CameraError as exc:
                self._drop(str(exc))
                return None
            self._delay = self.backoff_initial
            if self.state is CameraState.RECONNECTING:
                self.reconnects += 1
            self._set_state(CameraState.STREAMING)
            return frame

    def _connect(self) -> FrameSource | None:
        wait = self._next_attempt - self._clock()
        if wait > 0:
            if self.nonblocking:
                return None
            self._sleep(wait)
            if self._closing.is_set():
                return None
        self.attempts += 1
        try:
            source = self._open_source()
        except CAMERA_FAILURES as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        with self._lock:
            if self._closing.is_set():
                source.close()
                return None
            self._source = source
            self._exposure_applied = 0.0  # a camera opens on its own metering
        return source

    def _drop(self, reason: str) -> None:
        """Close the failed source (lock held) and schedule a reconnect."""
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except CAMERA_FAILURES as exc:
                log.warning("closing the failed camera: %s", exc)
        if self.state is CameraState.STREAMING:
            self._set_state(CameraState.RECONNECTING)
            self._delay = self.backoff_initial
        self._failed(reason)

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        self._next_attempt = self._clock() + self._delay
        log.warning("camera %s: %s; next attempt in %.2fs", self.state.value, reason, self._delay)
        self._delay = min(self._delay * 2, self.backoff_max)

    def _interruptible_sleep(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def _set_state(self, state: CameraState) -> None:
        if state is self.state:
            return
        self.state = state
        log.info("camera %s", state.value)
        for callback in list(self._callbacks):
            try:
                callback(state)
            except Exception:  # a broken observer must not take the camera down
                log.exception("camera state callback failed")

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            source, self._source = self._source, None
            try:
                if source is not None:
                    source.close()
            finally:
                self._set_state(CameraState.CLOSED)


def parse_camera_spec(spec: str) -> tuple[str, int | str | None]:
    """``replay:<path>``, ``opencv:<index|path|url>`` or ``picamera2`` as (kind, target).

    The one reader of the camera spec language (the configuration uses it too); raises
    ``CameraError`` for anything else, without echoing credentials in a stream URL.
    """
    kind, sep, target = spec.strip().partition(":")
    target = target.strip()
    if kind == "picamera2" and not sep:
        return kind, None
    if kind in ("replay", "opencv") and sep and target and "\x00" not in target:
        if kind == "opencv" and target.isdecimal():
            return kind, int(target)
        return kind, target
    raise CameraError(
        f"unknown camera spec {redact(spec)!r}: expected 'replay:<path>', "
        "'opencv:<index|path|url>' or 'picamera2'"
    )


def live_camera(kind: str, target: int | str | None, size: tuple[int, int]) -> FrameSource:
    """A live camera that reconnects by itself (opened on its first read, so a camera that
    is not plugged in yet is waited for rather than fatal)."""
    if kind == "opencv" and target is not None:
        return ReconnectingSource(lambda: OpenCVSource(target, size))
    if kind == "picamera2":
        if importlib.util.find_spec("picamera2") is None:
            raise CameraError("picamera2 is not available (install the 'device' extra)")
        return ReconnectingSource(lambda: Picamera2Source(size), controls_exposure=True)
    raise CameraError(f"{kind!r} is not a live camera")


@dataclass(frozen=True)
class CameraSpec:
    """``kind`` is ``replay``, ``opencv`` or ``picamera2``; ``target`` what to open."""

    kind: str
    target: Path | int | str | None
    width: int = 1280
    height: int = 720
    repeat: int = 1  # replay of still images: frames each image is shown for

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


__all__ = [
    "CAMERA_FAILURES",
    "IMAGE_SUFFIXES",
    "MAX_EXPOSURE_COMPENSATION",
    "STREAM_TIMEOUT_MS",
    "CameraSpec",
    "CameraState",
    "FrameSource",
    "OpenCVSource",
    "Picamera2Source",
    "ReconnectingSource",
    "ReplaySource",
    "bgr_frame",
    "live_camera",
    "parse_camera_spec",
    "place_in_canvas",
    "redact",
]

"""`gatectl bench vision`: our detector + quality gate against dlib's HOG detector.

Every image is placed into a grey 1280×720 frame, as a gate camera would see a
traveller at about 1–1.5 m. Our figure is detect + quality per frame on one thread;
the peer is dlib's HOG frontal face detector with one upsampling, the default of the
popular ``face_recognition`` library, run on the same frames.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from appliance.paths import demo_assets_dir
from appliance.vision.camera import IMAGE_SUFFIXES, place_in_canvas
from appliance.vision.detectors import create_detector
from appliance.vision.quality import assess
from gate_contract.progress import SILENT, Progress
from testbed.scenes import face_width

FRAME = (1280, 720)
NONFACE_FOLDER = "_nonface"
FACE_WIDTH_PX = 116


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def dataset_frames(dataset: Path) -> Iterator[tuple[bool, np.ndarray]]:
    """(is_face, 1280×720 frame) for ``<identity>/*`` face images and ``_nonface/*``."""
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        is_face = folder.name != NONFACE_FOLDER
        for path in _images(folder):
            image = cv2.imread(str(path))
            if image is not None:
                yield is_face, place_in_canvas(image, FRAME)


def packaged_frames() -> Iterator[tuple[bool, np.ndarray]]:
    """Images that ship with packages: the demo portraits and scikit-image's non-faces."""
    import skimage.data

    for path in _images(demo_assets_dir()):
        image = cv2.imread(str(path))
        scale = FACE_WIDTH_PX / face_width(image, path.name)  # a face at about 1.2 m
        yield True, place_in_canvas(cv2.resize(image, None, fx=scale, fy=scale), FRAME)
    # Not "camera": the cameraman is a real face.
    for name in ("coffee", "chelsea", "rocket", "coins", "horse", "hubble_deep_field"):
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = cv2.cvtColor(image.astype(np.uint8)[:, :, :3], cv2.COLOR_RGB2BGR)
        yield False, place_in_canvas(image, FRAME)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def _time_detector(frames, detect, bar) -> tuple[list[float], int, int, int]:
    """Per-frame milliseconds, face frames, face frames with a detection, false faces."""
    times: list[float] = []
    faces = found = false_faces = 0
    with bar:
        for is_face, frame in frames:
            start = time.perf_counter()
            detections = detect(frame)
            times.append((time.perf_counter() - start) * 1000)
            faces += is_face
            if is_face:
                found += bool(detections)
            else:
                false_faces += len(detections)
            frame.fill(0)
            bar.update()
    return times, faces, found, false_faces


def bench_vision(
    frames: Callable[[], Iterator[tuple[bool, np.ndarray]]],
    *,
    runtime: str = "litert",
    variant: str = "full",
    peer: bool = True,
    progress: Progress = SILENT,
) -> dict:
    """Two passes over the same frames (``frames()`` yields them afresh): ours, then the
    peer's, so neither evicts the other's working set from the caches between frames,
    as a camera pipeline that runs one detector continuously would see."""
    detector = create_detector(runtime, variant)
    warm_up = np.full((FRAME[1], FRAME[0], 3), 118, np.uint8)
    for _ in range(3):  # first inferences allocate; a running camera pipeline is warm
        detector.detect(warm_up)

    def ours(frame: np.ndarray) -> list:
        detections = detector.detect(frame)
        assess(frame, detections)
        return detections

    ours_ms, faces, found, false_faces = _time_detector(
        frames(), ours, progress.bar(f"{runtime} {variant}", unit="frame")
    )
    result = {
        "frames": len(ours_ms),
        "face_frames": faces,
        "runtime": runtime,
        "model": variant,
        "ms_median": round(statistics.median(ours_ms), 3),
        "ms_p99": round(_percentile(ours_ms, 99), 3),
        "recall": round(found / faces, 4) if faces else None,
        "false_faces_nonface": false_faces,
    }
    if peer:
        import dlib

        hog = dlib.get_frontal_face_detector()
        peer_ms, _, peer_found, peer_false = _time_detector(
            frames(),
            lambda frame: hog(np.ascontiguousarray(frame[:, :, ::-1]), 1),
            progress.bar("dlib HOG", total=len(ours_ms), unit="frame"),
        )
        result |= {
            "peer": "dlib HOG frontal (upsample 1)",
            "peer_ms_median": round(statistics.median(peer_ms), 2),
            "peer_recall": round(peer_found / faces, 4) if faces else None,
            "peer_false_faces_nonface": peer_false,
            "speedup": round(statistics.median(peer_ms) / statistics.median(ours_ms), 1),
        }
    return result


__all__ = [
    "FACE_WIDTH_PX",
    "FRAME",
    "NONFACE_FOLDER",
    "bench_vision",
    "dataset_frames",
    "packaged_frames",
]

"""Frame selection: pick the frame the matcher will see within one capture window.

The first frame whose face passes every quality threshold is chosen at once. If none
does before the window ends, the best frame seen (highest unified score) is sent only if
it passes the hard minimums; otherwise nothing is sent ("no usable face"). Frames that
were looked at and not kept are zeroized at once (the kept best is zeroized as soon as a
better one replaces it), and the wait stops the moment the traveller opts out.
``on_progress`` hears about every frame looked at, as coordinates and a quality key only
(``appliance.vision.progress``), e.g. for the traveller's positioning cue.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.vision.camera import FrameSource
from appliance.vision.detectors.base import Detector, Face
from appliance.vision.progress import CaptureProgress, ProgressObserver
from appliance.vision.quality import QualityReport, QualityThresholds, assess


@dataclass
class Selection:
    frame: np.ndarray
    report: QualityReport
    frames_seen: int
    first_face_at: float | None  # perf_counter() when a face was first seen in this window
    fallback: bool = False  # True: no frame passed every threshold; best one above minimums


class NoSelectionReason(enum.StrEnum):
    NO_FACE = "no_face"  # no face in any frame of the window: nobody there
    QUALITY = "quality"  # faces, but none good enough to send
    OPTED_OUT = "opted_out"  # the capture was cancelled (opt-out, agent, link lost)
    SOURCE_ENDED = "source_ended"  # the camera gave no frame at all


@dataclass
class NoSelection:
    reason: NoSelectionReason
    frames_seen: int
    last_feedback: str | None = None


def select_frame(
    source: FrameSource,
    detector: Detector,
    *,
    max_frames: int,
    limits: QualityThresholds | None = None,
    opted_out: Callable[[], bool] = lambda: False,
    on_progress: ProgressObserver | None = None,
) -> Selection | NoSelection:
    """Read up to ``max_frames`` frames and return the frame to send, or why there is none."""
    seen = 0
    first_face_at: float | None = None
    feedback = None
    previous: Face | None = None
    best: tuple[np.ndarray, QualityReport] | None = None

    def drop_best() -> None:
        if best is not None:
            best[0].fill(0)

    try:
        while seen < max_frames:
            if opted_out():
                drop_best()
                return NoSelection(NoSelectionReason.OPTED_OUT, seen, feedback)
            frame = source.read()
            if frame is None:
                if seen == 0:
                    return NoSelection(NoSelectionReason.SOURCE_ENDED, seen, feedback)
                break
            read_at = time.perf_counter()
            seen += 1
            faces = detector.detect(frame)
            report = assess(frame, faces, limits, previous)
            previous = report.face
            if on_progress is not None:
                on_progress(CaptureProgress.from_report(frame.shape, len(faces), report))
            if report.face is not None and first_face_at is None:
                first_face_at = read_at
            if report.passed and not opted_out():
                drop_best()
                return Selection(frame, report, seen, first_face_at)
            feedback = report.feedback or feedback
            if report.passes_hard_minimums and (best is None or report.score > best[1].score):
                drop_best()
                best = (frame, report)
            else:
                frame.fill(0)  # superseded: never kept, never sent
    except BaseException:
        # A fault or a shutdown on a later frame must not leave the kept best behind.
        drop_best()
        raise
    if opted_out():
        drop_best()
        return NoSelection(NoSelectionReason.OPTED_OUT, seen, feedback)
    if best is not None:
        return Selection(best[0], best[1], seen, first_face_at, fallback=True)
    return NoSelection(
        NoSelectionReason.NO_FACE if first_face_at is None else NoSelectionReason.QUALITY,
        seen,
        feedback,
    )


__all__ = ["NoSelection", "NoSelectionReason", "Selection", "select_frame"]

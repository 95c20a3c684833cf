"""What the capture saw in each frame, for a traveller display or a benchmark: no pixels.

A :class:`appliance.vision.selection.FrameSelector` calls each observer registered with
``add_observer`` once per frame it looked at, on the capture thread, with a
:class:`CaptureProgress`: where the traveller's face is (box and six keypoints, in frame
pixels), what the traveller should do (``feedback``, a stable key; ``feedback.text`` is
the English sentence), how close the capture is (``steady_frames`` of
``steady_needed``), and what the vision stage cost. It holds numbers and short strings
only, never pixels, so it may be sent to a screen or a browser as it is
(``to_dict`` gives plain JSON types). An observer must return quickly (the camera's
next frame waits) and its exceptions are logged, never passed on to the capture.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.vision.feedback import Feedback


@dataclass(frozen=True)
class CaptureProgress:
    frame: int  # frames looked at since this traveller's capture began (1 = the first)
    frame_size: tuple[int, int]  # (width, height) of the camera frame
    box: tuple[float, float, float, float] | None  # the traveller's face: x0, y0, x1, y1
    # right eye, left eye, nose tip, mouth, right ear, left ear, as (x, y)
    keypoints: tuple[tuple[float, float], ...] | None
    faces: int  # faces the detector returned for this frame
    feedback: Feedback | None  # what the traveller should do now (None: nothing, hold on)
    failures: tuple[str, ...]  # quality measures that failed (appliance.vision.quality)
    score: float  # unified quality 0-100 of the traveller's face
    # the face's mean grey level as the camera recorded it (before any tone curve): what
    # a face-metered exposure reads (``appliance.vision.exposure``); None: no face
    face_grey: float | None
    steady_frames: int  # consecutive frames that passed every threshold
    steady_needed: int  # ... needed before a frame is sent
    # the smallest inter-eye distance this capture takes now: the quality floor, raised
    # for a second look (the traveller must come nearer than the face that was sent)
    min_inter_eye_px: float
    # "zone": the whole capture zone was searched; "track": a region around the face;
    # "idle": not searched, the empty zone again (nobody in view); "rest": not looked at,
    # a moving lane that every kind of search just found empty (every other frame)
    search: str
    # this frame completed a capture decision: it is sent, unless a second look finds the
    # traveller nearer within ``SelectionRules.nearer_frames`` (the nearer one is sent)
    captured: bool
    vision_ms: float  # wall time of detection, quality and the selection rules
    vision_cpu_ms: float  # CPU time of the same, on the capture thread

    def to_dict(self) -> dict:
        """Plain JSON types (lists and numbers, the feedback key as a string)."""
        return {
            "frame": self.frame,
            "frame_size": list(self.frame_size),
            "box": [round(v, 1) for v in self.box] if self.box else None,
            "keypoints": [[round(x, 1), round(y, 1)] for x, y in self.keypoints]
            if self.keypoints
            else None,
            "faces": self.faces,
            "feedback": str(self.feedback) if self.feedback else None,
            "failures": list(self.failures),
            "score": round(self.score, 1),
            "face_grey": round(self.face_grey, 1) if self.face_grey is not None else None,
            "steady_frames": self.steady_frames,
            "steady_needed": self.steady_needed,
            "min_inter_eye_px": round(self.min_inter_eye_px, 1),
            "search": self.search,
            "captured": self.captured,
            "vision_ms": round(self.vision_ms, 3),
            "vision_cpu_ms": round(self.vision_cpu_ms, 3),
        }


__all__ = ["CaptureProgress"]

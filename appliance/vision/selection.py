"""Frame selection: which frame of a traveller the matcher sees, and when.

A :class:`FrameSelector` follows one traveller over consecutive capture windows: each
``select`` reads up to ``window_frames`` frames and returns the frame to send or why
there is none; the caller starts the next window after ``NO_FACE`` or ``APPROACHING``
(nobody to refer yet) and calls ``reset`` before the next traveller. The rules
(:class:`SelectionRules`), each measured by ``gatectl bench capture``:

* The nearest face in the capture zone (the largest) is the traveller. A second face of
  at least ``second_face_area_ratio`` of its area is a companion ("one at a time"); a
  clearly smaller one is someone behind in the queue and does not stop the capture. A
  companion seen in any whole-zone search blocks captures until at least
  ``companion_memory_frames`` frames have passed and ``companion_clear_searches``
  whole-zone searches in a row have shown no companion: the detector misses one of two
  faces now and then, and a frame that shows only one of them must not be sent. Meanwhile
  a tracking detector searches the whole zone every ``companion_search_frames`` frames,
  so the companion's leaving (or the person behind falling back in size as the traveller
  steps up) is seen soon, and when that search misses the companion it also looks where
  the companion was last seen, with the region model: people beside the traveller do not
  vanish, detectors miss them.
* Steady: the traveller's face, followed from frame to frame by overlap, must pass every
  threshold in ``steady_frames`` consecutive frames; of those, the best (unified score)
  is sent. A frame seen only through the tracking region is first checked on the whole
  zone: if a companion or a nearer face shows up, nothing is sent.
* The window's best: when no frame passed everything by the end of a window, the best
  frame above the hard minimums is sent, but only of a settled traveller (followed for
  ``settle_frames`` frames, still, no longer approaching, no companion around).
* Still approaching (the face grew by more than ``approach_growth`` over the last
  ``settle_frames`` frames): the window ends with ``APPROACHING``: nothing is sent,
  nobody is referred, the next window goes on.
* "No usable face" (``QUALITY``) is said only of a settled traveller that was at capture
  size in the window; a poster, someone far behind, a passer-by or a flicker ends the
  window as ``NO_FACE``.
* A second look (``retake``): when the matcher did not verify the face sent, the same
  traveller is captured once more (``attempts``) as they come nearer: the face must be
  ``retake_growth`` times the size (between the eyes) and come within ``retake_frames``.
  On the scene bench a face's chance to verify rises steeply with its size (noise,
  blur and MJPEG cost a small face far more), and a traveller walks up a second or so
  after the first capture; one who stands still is referred when the frames run out. A
  weak face must grow more (``weak_retake_growth``): a noisy one (a dim hall, a high
  sensor gain: the quality gate's ``noise`` measure) or a dark one that the tone curve
  lifted hard (backlight: few grey levels were recorded). On the bench such faces
  verify far less often at the first capture's size, most often only near the camera.
  A traveller who stops coming nearer (at the gate, short of that size) is taken as near
  as they came once settled, if their face is ``stopped_retake_growth`` times the one
  sent: the attempt is spent on their nearest face rather than left unused by a referral.
  Once a face is big enough, the second look goes on while the traveller still comes
  nearer: a face ``nearer_growth`` times bigger within ``nearer_frames`` frames replaces
  it (the last look is the traveller's nearest; on the bench the face at the traveller's
  nearest verified where the first big-enough one had not).

With ``exposure_correction`` a dark face is measured, and sent, through one global tone
curve (``appliance.vision.tone``; ``Selection.gamma``).

Privacy: every frame read is zeroized unless it is returned. The frames kept as
candidates (the steady run, the window's best) are zeroized as soon as they are
superseded, at the end of every window that sends nothing, on opt-out and on any
exception. Observers (``add_observer``) receive a :class:`CaptureProgress` per frame:
positions, measures and advice, never pixels.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from appliance.vision.camera import FrameSource
from appliance.vision.detectors.base import Detector, Face, iou, same_face
from appliance.vision.detectors.skin import only_skin
from appliance.vision.detectors.tracking import TrackingDetector
from appliance.vision.feedback import FEEDBACK, Feedback
from appliance.vision.progress import CaptureProgress
from appliance.vision.quality import QualityReport, QualityThresholds, assess

log = logging.getLogger("gate.capture")

DEFAULT_WINDOW_FRAMES = 45  # 1.5 s at 30 fps
# Each capture sent is one more chance for an impostor to pass (the matcher's false
# accept rate per capture, times the captures): a few at most.
MAX_ATTEMPTS = 3
_MEASURE_ORDER = list(FEEDBACK)


@dataclass(frozen=True)
class SelectionRules:
    """When a frame is sent (see the module docstring)."""

    steady_frames: int = 2
    exposure_correction: bool = True
    companion_memory_frames: int = 15  # half a second at 30 fps
    companion_clear_searches: int = 3
    companion_search_frames: int = 3
    settle_frames: int = 10
    still_frames: int = 5  # a traveller referred for "no usable face" stood still this long
    approach_growth: float = 0.06  # face width growth over settle_frames: still walking up
    same_face_overlap: float = 0.3  # box overlap (IoU) of one face in consecutive frames
    attempts: int = 2  # captures sent for one traveller before a referral (see retake)
    retake_growth: float = 1.4  # the second look's face, between the eyes, over the first's
    # ... when the face sent was weak: noisy (``noise`` of at least ``weak_face_noise``
    # grey levels) or dark (lifted by a tone curve of ``weak_face_gamma`` or less). Such a
    # face needs far more pixels before it verifies (see ``retake``).
    weak_retake_growth: float = 1.8
    # ... or, once the traveller has stopped coming nearer (settled), this much
    stopped_retake_growth: float = 1.2
    weak_face_noise: float = 2.0
    weak_face_gamma: float = 0.6
    retake_frames: int = 45  # 1.5 s at 30 fps for the traveller to come that near
    # ... then a face this much bigger (between the eyes) within this many frames (0.5 s
    # at 30 fps) replaces it: on the bench 1.05 / 15 sent the face of the traveller's
    # nearest (as often verified as the nearest frame of the video) where 1.1 / 6 and
    # 1.08 / 10 stopped short
    nearer_growth: float = 1.05
    nearer_frames: int = 15

    def __post_init__(self) -> None:
        if self.steady_frames < 1 or self.settle_frames < 1 or self.still_frames < 1:
            raise ValueError("steady_frames, settle_frames and still_frames must be >= 1")
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"attempts must be 1 to {MAX_ATTEMPTS}")
        growths = (self.retake_growth, self.weak_retake_growth, self.stopped_retake_growth)
        if min(growths) < 1.0 or self.retake_frames < 1:
            raise ValueError("retake growths must be >= 1 and retake_frames >= 1")
        if self.nearer_growth <= 1.0 or self.nearer_frames < 1:
            raise ValueError("nearer_growth must be > 1 and nearer_frames >= 1")


@dataclass
class Selection:
    frame: np.ndarray
    report: QualityReport
    frames_seen: int  # frames read in this window
    first_face_at: float | None  # perf_counter() when a face was first seen in this window
    fallback: bool = False  # True: no frame passed every threshold; best one above minimums
    frame_index: int = 0  # frames since the traveller's capture began, at the decision

    @property
    def gamma(self) -> float:
        """The tone curve the face was measured through, to apply to what is sent."""
        return self.report.gamma


class NoSelectionReason(enum.StrEnum):
    NO_FACE = "no_face"  # nobody at the gate (or only a poster, a passer-by, a flicker)
    APPROACHING = "approaching"  # a traveller still walking up: not yet, not a referral
    QUALITY = "quality"  # a traveller at the gate, but no frame good enough to send
    OPTED_OUT = "opted_out"  # the capture was cancelled (opt-out, agent, link lost)
    SOURCE_ENDED = "source_ended"  # the camera gave no frame at all


@dataclass
class NoSelection:
    reason: NoSelectionReason
    frames_seen: int
    last_feedback: Feedback | None = None

    @property
    def undecided(self) -> bool:
        """Nobody to decide yet (no face, or a traveller still approaching): the same
        traveller's capture goes on in the next window; nobody is referred."""
        return self.reason in (NoSelectionReason.NO_FACE, NoSelectionReason.APPROACHING)


@dataclass
class _Candidate:
    frame: np.ndarray
    report: QualityReport
    zone_faces: list[Face] | None  # the whole zone's faces in this frame (None: a region)


@dataclass
class _Window:
    seen: int = 0
    first_face_at: float | None = None
    feedback: Feedback | None = None
    closest_ied: float = 0.0
    best: _Candidate | None = None


def _companion(faces: list[Face], face: Face, area_ratio: float) -> Face | None:
    """A face other than ``face`` of at least ``area_ratio`` of its area, if any."""
    return next(
        (
            other
            for other in faces
            if other is not face
            and not same_face(other, face)
            and other.area >= area_ratio * face.area
        ),
        None,
    )


class FrameSelector:
    """Chooses the frame to send for one traveller at a time (module docstring)."""

    def __init__(
        self,
        detector: Detector,
        limits: QualityThresholds | None = None,
        rules: SelectionRules | None = None,
        *,
        window_frames: int = DEFAULT_WINDOW_FRAMES,
    ) -> None:
        if window_frames < 1:
            raise ValueError("window_frames must be at least 1")
        self.detector = detector
        self.limits = limits or QualityThresholds()
        self.rules = rules or SelectionRules()
        self.window_frames = window_frames
        self._observers: list[Callable[[CaptureProgress], object]] = []
        self._observer_failed = False
        self._run: list[_Candidate] = []
        self._window = _Window()
        self.reset()

    def add_observer(
        self, callback: Callable[[CaptureProgress], object]
    ) -> Callable[[CaptureProgress], object]:
        """Call ``callback(progress)`` for every frame looked at (usable as a decorator)."""
        self._observers.append(callback)
        return callback

    def reset(self) -> None:
        """Forget the traveller: the next frame starts a new capture."""
        self._wipe_all()
        self._frames = 0
        self._previous: Face | None = None
        self._track = 0
        self._streak = 0  # frames in a row that passed every threshold (across windows)
        self._still = 0
        self._companion_until = -1  # frame until which a companion seen blocks captures
        self._companion_clear = 0  # whole-zone searches in a row without a companion
        self._companion_face: Face | None = None  # where the companion was last seen
        self._widths: deque[tuple[int, float]] = deque()
        # a second look: the smallest inter-eye distance taken from a traveller who has
        # stopped coming nearer (None: no such allowance)
        self._stopped_need: float | None = None
        reset_detector = getattr(self.detector, "reset", None)
        if callable(reset_detector):
            reset_detector()

    # --- one window ---------------------------------------------------------------------

    def select(
        self,
        source: FrameSource,
        *,
        opted_out: Callable[[], bool] = lambda: False,
        max_frames: int | None = None,
    ) -> Selection | NoSelection:
        """Read up to ``max_frames`` (default ``window_frames``) frames: the frame to send,
        or why there is none."""
        limit = max_frames or self.window_frames
        window = self._window = _Window()
        frame = None
        try:
            while window.seen < limit:
                if opted_out():
                    return self._nothing(NoSelectionReason.OPTED_OUT)
                frame = source.read()
                if frame is None:
                    if window.seen == 0:
                        return self._nothing(NoSelectionReason.SOURCE_ENDED)
                    break
                read_at = time.perf_counter()
                window.seen += 1
                self._frames += 1
                chosen = self._frame(frame)
                if window.first_face_at is None and self._previous is not None:
                    window.first_face_at = read_at
                if chosen is not None:
                    if opted_out():
                        return self._nothing(NoSelectionReason.OPTED_OUT)
                    return self._send(chosen, fallback=False)
            if opted_out():
                return self._nothing(NoSelectionReason.OPTED_OUT)
            return self._end_of_window()
        except BaseException:
            # A fault or a shutdown on any frame must not leave a frame behind: neither
            # the kept ones nor the one in hand.
            self._wipe_all()
            if frame is not None:
                frame.fill(0)
            raise

    def retake(
        self,
        source: FrameSource,
        sent: QualityReport,
        *,
        opted_out: Callable[[], bool] = lambda: False,
    ) -> Selection | NoSelection:
        """Capture the same traveller again after the matcher did not verify ``sent``: a
        face ``rules.retake_growth`` times its size (``weak_retake_growth`` if ``sent``
        was noisy or dark) within ``rules.retake_frames`` frames, and then the nearest
        one the traveller gives (``_nearest``); or the last window's ``NoSelection`` (the
        caller refers)."""
        rules, base = self.rules, self.limits
        weak = (
            sent.measures.get("noise", 0.0) >= rules.weak_face_noise
            or sent.gamma <= rules.weak_face_gamma
        )
        growth = rules.weak_retake_growth if weak else rules.retake_growth
        left = rules.retake_frames
        sent_ied = sent.measures["inter_eye_distance"]
        try:
            self._need(base, sent_ied * growth)
            self._stopped_need = sent_ied * rules.stopped_retake_growth
            while True:
                answer = self.select(
                    source, opted_out=opted_out, max_frames=min(left, self.window_frames)
                )
                left -= answer.frames_seen
                if isinstance(answer, Selection):
                    self._stopped_need = None  # "nearer" asks for more than this face
                    return self._nearest(source, answer, left, opted_out, base)
                if not answer.undecided or left <= 0:
                    return answer
        finally:
            self._stopped_need = None
            self.limits = base

    def _need(self, base: QualityThresholds, inter_eye_px: float) -> None:
        """From now on a frame is sent only with a face this size or bigger."""
        self.limits = replace(
            base,
            min_inter_eye_px=max(base.min_inter_eye_px, inter_eye_px),
            hard_min_inter_eye_px=max(base.hard_min_inter_eye_px, inter_eye_px),
        )
        self._streak = 0
        self._drop_run()

    def _nearest(
        self,
        source: FrameSource,
        answer: Selection,
        left: int,
        opted_out: Callable[[], bool],
        base: QualityThresholds,
    ) -> Selection | NoSelection:
        """``answer``, or a nearer face of the same traveller while one keeps coming
        (``nearer_growth`` within ``nearer_frames``). Only a frame that passed every
        threshold, on the same unbroken track as ``answer``, replaces it (someone nearer
        stepping in front is not the traveller); the one replaced is zeroized at once."""
        rules, seen = self.rules, answer.frames_seen
        track = self._track_start()
        nearer: Selection | NoSelection | None = None
        try:
            while left > 0:
                self._need(base, answer.report.measures["inter_eye_distance"] * rules.nearer_growth)
                nearer = self.select(
                    source, opted_out=opted_out, max_frames=min(left, rules.nearer_frames)
                )
                left -= nearer.frames_seen
                seen += nearer.frames_seen
                if isinstance(nearer, NoSelection):
                    if nearer.reason is NoSelectionReason.OPTED_OUT:
                        answer.frame.fill(0)
                        return replace(nearer, frames_seen=seen)
                    break
                if nearer.fallback or self._track_start() != track:
                    nearer.frame.fill(0)
                    break
                # wiped before it is let go: an interrupt in between finds both in hand
                answer.frame.fill(0)
                answer = nearer
        except BaseException:
            answer.frame.fill(0)
            if isinstance(nearer, Selection):
                nearer.frame.fill(0)
            raise
        return replace(answer, frames_seen=seen)

    def _track_start(self) -> int:
        """The frame at which the face followed now was first seen (its track began)."""
        return self._frames - self._track

    def _frame(self, frame: np.ndarray) -> _Candidate | None:
        """Look at one frame; the candidate to send now, if the rules say so."""
        started, cpu = time.perf_counter(), time.thread_time()
        window, rules = self._window, self.rules
        faces = self.detector.detect(frame)
        zone_faces = self._zone_faces(faces)
        report = assess(
            frame, self._travellers(frame, faces), self.limits, self._previous,
            exposure_correction=rules.exposure_correction,
        )  # fmt: skip
        face = report.face
        if zone_faces is not None and face is not None:
            self._saw_zone(frame, face, zone_faces)
        if face is not None and self._companion_recent():
            _fail(report, "single_face")
        self._follow(report)
        if face is not None:
            window.closest_ied = max(window.closest_ied, report.measures["inter_eye_distance"])
            self._take_as_near_as_they_came(report.measures["inter_eye_distance"])
        window.feedback = report.feedback or window.feedback
        candidate = _Candidate(frame, report, zone_faces)
        if report.passed:
            self._streak += 1
            self._run.append(candidate)
        else:
            self._streak = 0
            self._drop_run()
        best = window.best
        if self._may_fall_back(report) and (best is None or report.score > best.report.score):
            window.best = candidate
            if best is not None:
                self._release(best.frame)
        chosen = self._steady_choice() if self._streak >= rules.steady_frames else None
        if isinstance(self.detector, TrackingDetector) and self._companion_recent():
            self.detector.search_zone_within(rules.companion_search_frames)
        if chosen is None:
            self._release(frame)
        self._notify(frame, faces, report, chosen is not None, started, cpu)
        return chosen

    def _follow(self, report: QualityReport) -> None:
        """Is this the face of the last frame? Track length, stillness and growth."""
        rules, face = self.rules, report.face
        same = (
            face is not None
            and self._previous is not None
            and iou(face.box, self._previous.box) >= rules.same_face_overlap
        )
        if same:
            self._track += 1
        else:
            self._track = 1 if face is not None else 0
            self._widths.clear()
            self._streak = 0
            self._drop_run()
        moving = face is None or "motion" in report.failures
        self._still = 0 if moving else self._still + 1
        if face is not None:
            self._widths.append((self._frames, face.width))
            while self._widths and self._widths[0][0] < self._frames - rules.settle_frames:
                self._widths.popleft()
        self._previous = face

    def _take_as_near_as_they_came(self, inter_eye_px: float) -> None:
        """In a second look, a traveller settled short of the size asked for: from the next
        frame on, their face is taken at the size it has now (if ``_stopped_need`` allows)."""
        need = self._stopped_need
        if need is None or not need <= inter_eye_px < self.limits.min_inter_eye_px:
            return
        if not self._settled():
            return
        self._stopped_need = None
        self.limits = replace(
            self.limits, min_inter_eye_px=inter_eye_px, hard_min_inter_eye_px=inter_eye_px
        )

    def _steady_choice(self) -> _Candidate | None:
        """The best frame of a steady run, if the whole zone allows sending it."""
        chosen = max(self._run, key=lambda c: c.report.score)
        if self._zone_allows(chosen):
            return chosen
        self._streak = 0
        self._drop_run()
        return None

    def _zone_allows(self, candidate: _Candidate) -> bool:
        """The whole zone of ``candidate``'s frame shows nobody nearer than its face, and no
        companion beside it."""
        faces = candidate.zone_faces
        if faces is None:
            assert isinstance(self.detector, TrackingDetector)
            faces = self.detector.detect_zone(candidate.frame)
        face = candidate.report.face
        assert face is not None
        others = [f for f in faces if f is not face and not same_face(f, face)]
        if any(other.area > face.area for other in others):
            return False  # someone nearer than the face followed: not this frame
        companion = self._saw_zone(candidate.frame, face, others)
        return not companion and not self._companion_recent()

    def _saw_zone(self, frame: np.ndarray, face: Face, zone_faces: list[Face]) -> bool:
        """Does this whole-zone search show a companion beside ``face``? While one is
        remembered and the search misses them, the region model looks where they were."""
        ratio = self.limits.second_face_area_ratio
        companion = _companion(zone_faces, face, ratio)
        last = self._companion_face
        if companion is None and last is not None and self._companion_recent():
            detector = self.detector
            if isinstance(detector, TrackingDetector):
                companion = _companion(detector.look_around(frame, last), face, ratio)
        if companion is not None:
            self._companion_until = self._frames + self.rules.companion_memory_frames
            self._companion_clear = 0
            self._companion_face = companion
        else:
            self._companion_clear += 1
        return companion is not None

    def _companion_recent(self) -> bool:
        if self._companion_until < 0:
            return False
        return (
            self._frames <= self._companion_until
            or self._companion_clear < self.rules.companion_clear_searches
        )

    def _may_fall_back(self, report: QualityReport) -> bool:
        """May this frame be sent as the window's best? (a settled traveller only)"""
        return (
            report.passes_hard_minimums
            and "motion" not in report.failures
            and self._settled()
            and not self._companion_recent()
        )

    def _settled(self) -> bool:
        """Followed for ``settle_frames`` and no longer coming nearer."""
        return self._track >= self.rules.settle_frames and not self._approaching()

    def _approaching(self) -> bool:
        if len(self._widths) < 2:
            return False
        growth = self._widths[-1][1] / max(self._widths[0][1], 1e-6) - 1
        return growth > self.rules.approach_growth

    def _end_of_window(self) -> Selection | NoSelection:
        window = self._window
        if self._approaching():
            return self._nothing(NoSelectionReason.APPROACHING)
        best = window.best
        if best is not None and self._zone_allows(best):
            return self._send(best, fallback=True)
        if window.first_face_at is None:
            return self._nothing(NoSelectionReason.NO_FACE)
        settled = (
            self._track >= self.rules.settle_frames
            and self._still >= self.rules.still_frames
            and window.closest_ied >= self.limits.min_inter_eye_px
        )
        return self._nothing(NoSelectionReason.QUALITY if settled else NoSelectionReason.NO_FACE)

    # --- frames kept, sent or wiped -----------------------------------------------------

    def _send(self, chosen: _Candidate, *, fallback: bool) -> Selection:
        window = self._window
        self._wipe_all(keep=chosen.frame)
        return Selection(
            chosen.frame, chosen.report, window.seen, window.first_face_at, fallback, self._frames
        )

    def _nothing(self, reason: NoSelectionReason) -> NoSelection:
        self._wipe_all()
        return NoSelection(reason, self._window.seen, self._window.feedback)

    def _held(self) -> list[np.ndarray]:
        held = [c.frame for c in self._run]
        if self._window.best is not None:
            held.append(self._window.best.frame)
        return held

    def _release(self, frame: np.ndarray) -> None:
        """Zeroize ``frame`` unless it is still kept as a candidate."""
        if not any(kept is frame for kept in self._held()):
            frame.fill(0)

    def _drop_run(self) -> None:
        run, self._run = self._run, []
        for candidate in run:
            self._release(candidate.frame)

    def _wipe_all(self, keep: np.ndarray | None = None) -> None:
        for frame in self._held():
            if frame is not keep:
                frame.fill(0)
        self._run = []
        self._window.best = None

    # --- what the capture saw -----------------------------------------------------------

    def _travellers(self, frame: np.ndarray, faces: list[Face]) -> list[Face]:
        """The faces that may be the traveller: those that can be skin (``detectors.skin``).
        The others still count as someone else there (``zone_faces``). A region search
        returns the followed face only, which the tracker checked when it chose it (and
        checks again on every whole-zone search)."""
        detector = self.detector
        if isinstance(detector, TrackingDetector) and detector.last_search == "track":
            return faces
        return only_skin(frame, faces)

    def _zone_faces(self, faces: list[Face]) -> list[Face] | None:
        """Every face (possible ones too) of this frame's whole zone; None: a region only."""
        detector = self.detector
        if not isinstance(detector, TrackingDetector):
            return faces
        return detector.possible_faces if detector.zone_searched else None

    def _notify(self, frame, faces, report, captured, started: float, cpu: float) -> None:
        vision_ms = (time.perf_counter() - started) * 1000
        vision_cpu_ms = (time.thread_time() - cpu) * 1000
        if not self._observers:
            return
        face = report.face
        feedback = report.feedback
        if feedback is None and report.passed and not captured:
            feedback = Feedback.HOLD_STILL  # passing: hold on for a steady frame
        progress = CaptureProgress(
            frame=self._frames,
            frame_size=(frame.shape[1], frame.shape[0]),
            box=tuple(float(v) for v in face.box) if face is not None else None,
            keypoints=tuple((float(x), float(y)) for x, y in face.keypoints)
            if face is not None
            else None,
            faces=len(faces),
            feedback=feedback,
            failures=tuple(report.failures),
            score=report.score,
            face_grey=report.face_grey,
            steady_frames=self._streak,
            steady_needed=self.rules.steady_frames,
            min_inter_eye_px=self.limits.min_inter_eye_px,
            search=self.detector.search if isinstance(self.detector, TrackingDetector) else "zone",
            captured=captured,
            vision_ms=vision_ms,
            vision_cpu_ms=vision_cpu_ms,
        )
        for observer in self._observers:
            try:
                observer(progress)
            except Exception:  # a broken display must never stop the capture
                if not self._observer_failed:
                    log.exception("capture progress observer failed")
                    self._observer_failed = True


def _fail(report: QualityReport, measure: str) -> None:
    """Add a failing measure (in the quality gate's order; the first one speaks)."""
    for failures in (report.failures, report.hard_failures):
        if measure not in failures:
            failures.append(measure)
            failures.sort(key=_MEASURE_ORDER.index)


__all__ = [
    "DEFAULT_WINDOW_FRAMES",
    "MAX_ATTEMPTS",
    "FrameSelector",
    "NoSelection",
    "NoSelectionReason",
    "Selection",
    "SelectionRules",
]

"""`gatectl bench capture`: the capture path on scenes a gate camera would see.

Every scene (``testbed.scene_format``) runs through what the service runs: its video is
read by ``appliance.vision.camera.ReplaySource`` (OpenCV), the detector and the selection
rules come from ``[vision]`` through ``appliance.service.parts.vision_parts``, and one
:class:`appliance.vision.selection.FrameSelector` reads capture windows exactly as
``TravellerPipeline`` does in the serve loop: after ``NO_FACE`` or ``APPROACHING`` the
next window starts on the next frame; a ``Selection`` is a capture; ``QUALITY`` is a
referral ("no usable face"); the scene ends there or when its video does. Frames are
read in order and all of them are processed (no wall-clock pacing), so the results do
not depend on the machine's speed; the service behind a live camera sees the same
frames as long as vision keeps up with 30 fps. The vision time of each frame
(detection, quality and the selection rules, without video decoding) comes from the
selector's progress reports, in wall and CPU time.

Figures: ``capture_rate`` (captured among ``expect=capture``), ``false_captures``
(captured among ``expect=no_capture``), ``time_to_capture_s_p50``/``_p90`` (the frame at
which the capture was decided, i.e. the frame is sent, over fps, from the start of the
video), ``ms_per_frame_median``/``_p99`` (and ``cpu_ms_...``), ``by_tag`` (per tag: a
capture rate for ``expect=capture`` tags, the false-capture rate for the others; a
scene counts under each of its tags), ``reasons`` (the last feedback of the scenes that
were not captured), and with a ``truth.json`` whose face was captured
(``wrong_person_captures``). With a gallery, ``right_person_rate`` (captures verified
1:1 as their scene's identity by the reference matcher, over ``expect=capture`` scenes
of enrolled identities; ``scenes_not_in_gallery`` counts the others, whose identity
names no gallery folder, so a misspelt name is not taken for a miss) beside
``matcher_own_rate`` (the scene's source photo, sent as it is) and ``nearest_frame_rate``
(the frame where truth.json's traveller face is widest, sent as a capture: what the
best-timed capture could reach in the scene's light, so a gap to ``right_person_rate``
is the capture's timing, and one to ``matcher_own_rate`` the scene's light and
distance). A scene that cannot be read is reported with its error and the run goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from appliance.errors import CameraError
from appliance.service.config import VisionConfig
from appliance.service.parts import vision_parts
from appliance.vision.camera import FrameSource, ReplaySource
from appliance.vision.detectors.base import Detector, iou
from appliance.vision.exposure import face_metered_exposure
from appliance.vision.progress import CaptureProgress
from appliance.vision.quality import QualityThresholds, assess
from appliance.vision.selection import (
    FrameSelector,
    NoSelectionReason,
    Selection,
    SelectionRules,
)
from gate_contract.progress import SILENT, Progress
from matching_service.recognizers import DEFAULT_RECOGNIZER
from testbed.bench.exposure_tracks import ExposureTracks
from testbed.scene_format import (
    SceneFormatError,
    exposure_tracks,
    read_scene_info,
    read_truth,
    scene_folders,
    video_of,
)

DEFAULT_FPS = 30.0


@dataclass
class SceneResult:
    scene: str
    expect: str | None = None
    identity: str | None = None
    tags: tuple[str, ...] = ()
    outcome: str = "error"  # captured | referred | not_captured | error
    error: str | None = None
    fallback: bool = False
    frames: int = 0
    time_to_capture_s: float | None = None
    whose_face: str | None = None  # truth.json's role of the captured face
    verified: bool | None = None  # the reference matcher: the right person
    captures_sent: int = 0  # to the matcher (retakes included), with a gallery
    time_to_verified_s: float | None = None  # the capture that verified
    retake_whose_faces: list[str | None] = field(default_factory=list)
    photo_verified: bool | None = None  # ... for the scene's source photo
    nearest_verified: bool | None = None  # ... for the frame of the traveller's largest face
    feedback: str | None = None  # the last advice in a scene that was not captured
    exposure_changes: list[list[float]] = field(default_factory=list)  # [frame, stops]
    windows: list[str] = field(default_factory=list)
    vision_ms: list[float] = field(default_factory=list, repr=False)
    vision_cpu_ms: list[float] = field(default_factory=list, repr=False)
    searches: list[str] = field(default_factory=list, repr=False)

    def details(self) -> dict:
        """This scene as one JSON-ready dict (figures and positions only)."""
        out = dataclasses.asdict(self)
        searches = out.pop("searches")
        out["searches"] = dict(Counter(searches))
        for key in ("vision_ms", "vision_cpu_ms"):
            values = out.pop(key)
            out[key.replace("_ms", "_ms_median")] = (
                round(statistics.median(values), 3) if values else None
            )
        out["tags"] = list(self.tags)
        return out


def _fps(video: Path) -> float:
    capture = cv2.VideoCapture(str(video))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and 1 <= fps <= 240 else DEFAULT_FPS


def _whose(box, truth: dict | None, index: int) -> str | None:
    """Which person of truth.json the face box at frame ``index`` is (IoU >= 0.3)."""
    if truth is None or box is None:
        return None
    best, role = 0.3, "nobody"
    for name, entry in truth["faces"].items():
        boxes = entry.get("boxes", [])
        if index < len(boxes) and boxes[index] is not None:
            overlap = iou(tuple(box), tuple(boxes[index]))
            if overlap >= best:
                best, role = overlap, name
    return role


def run_scene(
    folder: Path,
    selector: FrameSelector,
    verify: Callable[[str, Selection], bool | None] | None = None,
    *,
    face_exposure_ev: float = VisionConfig.face_exposure_ev,
) -> SceneResult:
    """One scene through ``selector`` (fresh, one per scene); never raises for a bad scene.

    A scene with exposure tracks is read as a camera with exposure control, driven by
    the service's face-metered exposure up to ``face_exposure_ev`` stops."""
    result = SceneResult(folder.name)
    try:
        info = read_scene_info(folder)
        tracks = exposure_tracks(folder)
        video = tracks[0.0]
        source = ExposureTracks(tracks) if len(tracks) > 1 else ReplaySource(video)
    except (SceneFormatError, CameraError) as exc:
        result.error = str(exc)
        return result
    exposure = face_metered_exposure(source, face_exposure_ev)
    if exposure is not None:
        selector.add_observer(exposure)
    result.expect, result.identity, result.tags = info.expect, info.identity, info.tags
    fps = _fps(video)
    boxes: dict[int, tuple[float, float, float, float] | None] = {}

    @selector.add_observer
    def observe(progress: CaptureProgress) -> None:
        result.vision_ms.append(progress.vision_ms)
        result.vision_cpu_ms.append(progress.vision_cpu_ms)
        result.searches.append(progress.search)
        boxes[progress.frame] = progress.box

    try:
        while True:
            answer = selector.select(source)
            if isinstance(answer, Selection):
                _captured(result, answer, boxes, folder, fps)
                if verify is not None and info.identity is not None:
                    whose = functools.partial(_whose_capture, boxes=boxes, truth=read_truth(folder))
                    _verify_with_retakes(result, answer, selector, source, verify, whose, fps)
                answer.frame.fill(0)
                break
            result.windows.append(str(answer.reason))
            result.feedback = str(answer.last_feedback) if answer.last_feedback else None
            if answer.undecided:
                continue
            if answer.reason is NoSelectionReason.QUALITY:
                result.outcome = "referred"
            elif not boxes:
                result.error = "the video has no readable frame"
            else:
                result.outcome = "not_captured"
            break
    finally:
        source.close()
    result.frames = len(boxes)
    if isinstance(source, ExposureTracks):
        result.exposure_changes = [list(change) for change in source.changes]
    return result


def _captured(result: SceneResult, answer: Selection, boxes: dict, folder: Path, fps: float):
    result.outcome, result.fallback = "captured", answer.fallback
    result.windows.append("fallback" if answer.fallback else "captured")
    result.time_to_capture_s = round((answer.frame_index - 1) / fps, 3)
    result.whose_face = _whose_capture(answer, boxes, read_truth(folder))


def _whose_capture(answer: Selection, boxes: dict, truth: dict | None) -> str | None:
    # The frame sent may be one of the last few (the best of a steady run): find it.
    box = answer.report.face.box
    chosen = next((n for n in sorted(boxes, reverse=True) if boxes[n] == box), answer.frame_index)
    return _whose(box, truth, chosen - 1)


def _verify_with_retakes(
    result: SceneResult,
    first: Selection,
    selector: FrameSelector,
    source: FrameSource,
    verify: Callable[[str, Selection], bool | None],
    whose: Callable[[Selection], str | None],
    fps: float,
) -> None:
    """Verify as the service does: a capture the matcher does not verify is taken again
    (``FrameSelector.retake``) while ``rules.attempts`` allows."""
    assert result.identity is not None
    answer = first
    while True:
        result.verified = verify(result.identity, answer)
        if result.verified is None:  # not in the gallery: nothing was sent
            return
        result.captures_sent += 1
        if result.verified:
            result.time_to_verified_s = round((answer.frame_index - 1) / fps, 3)
        if result.verified is not False or result.captures_sent >= selector.rules.attempts:
            return
        report = answer.report
        answer.frame.fill(0)
        again = selector.retake(source, report)
        if not isinstance(again, Selection):
            result.windows.append(f"retake:{again.reason}")
            return
        result.windows.append("retaken")
        result.retake_whose_faces.append(whose(again))
        answer = again


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def summarise(results: list[SceneResult], *, with_gallery: bool) -> dict:
    """The bench's figures over every scene (see the module docstring)."""
    scenes = [r for r in results if r.error is None]
    positive = [r for r in scenes if r.expect == "capture"]
    negative = [r for r in scenes if r.expect == "no_capture"]
    captured = [r for r in positive if r.outcome == "captured"]
    times = [r.time_to_capture_s for r in captured if r.time_to_capture_s is not None]
    ms = [v for r in scenes for v in r.vision_ms]
    cpu = [v for r in scenes for v in r.vision_cpu_ms]
    by_tag: dict[str, dict] = {}
    for r in scenes:
        for tag in r.tags or ("untagged",):
            entry = by_tag.setdefault(tag, {"expect": r.expect, "scenes": 0, "captured": 0})
            entry["scenes"] += 1
            entry["captured"] += r.outcome == "captured"
            if entry["expect"] != r.expect:
                entry["expect"] = "mixed"
    for entry in by_tag.values():
        entry["rate"] = round(entry["captured"] / entry["scenes"], 3)
    reasons = Counter(
        f"{r.outcome}:{r.feedback or 'no_face'}" for r in positive if r.outcome != "captured"
    )
    truth_known = [r for r in captured if r.whose_face is not None]
    by_search: dict[str, list[float]] = {}
    for r in scenes:
        for kind, value in zip(r.searches, r.vision_cpu_ms, strict=True):
            by_search.setdefault(kind, []).append(value)
    summary = {
        "scenes": len(results),
        "scene_errors": len(results) - len(scenes),
        "capture_scenes": len(positive),
        "capture_rate": round(len(captured) / len(positive), 4) if positive else None,
        "no_capture_scenes": len(negative),
        "false_captures": sum(r.outcome == "captured" for r in negative),
        "referred": sum(r.outcome == "referred" for r in scenes),
        "fallback_captures": sum(r.fallback for r in captured),
        "exposure_raised_scenes": sum(any(ev > 0 for _, ev in r.exposure_changes) for r in scenes),
        "wrong_person_captures": sum(r.whose_face != "traveller" for r in truth_known)
        + sum(who not in ("traveller", None) for r in captured for who in r.retake_whose_faces),
        "time_to_capture_s_p50": _percentile(times, 50),
        "time_to_capture_s_p90": _percentile(times, 90),
        "frames": len(ms),
        "ms_per_frame_median": _percentile(ms, 50),
        "ms_per_frame_p99": _percentile(ms, 99),
        "cpu_ms_per_frame_median": _percentile(cpu, 50),
        "cpu_ms_per_frame_p99": _percentile(cpu, 99),
        "cpu_ms_by_search": {
            kind: {"frames": len(v), "median": _percentile(v, 50), "p99": _percentile(v, 99)}
            for kind, v in sorted(by_search.items())
        },
        "by_tag": dict(sorted(by_tag.items())),
        "reasons": dict(reasons.most_common()),
    }
    if with_gallery:
        asked = [r for r in positive if r.verified is not None]
        photos = [r.photo_verified for r in positive if r.photo_verified is not None]
        summary["right_person_rate"] = (
            round(sum(bool(r.verified) for r in asked) / len(asked), 4) if asked else None
        )
        summary["matcher_own_rate"] = round(sum(photos) / len(photos), 4) if photos else None
        nearest = [r.nearest_verified for r in positive if r.nearest_verified is not None]
        summary["nearest_frame_rate"] = round(sum(nearest) / len(nearest), 4) if nearest else None
        summary["verified_scenes"] = len(asked)
        summary["scenes_not_in_gallery"] = sum(
            r.identity is not None and r.verified is None for r in positive
        )
        summary["right_person_first_capture_rate"] = (
            round(sum(bool(r.verified) and r.captures_sent == 1 for r in asked) / len(asked), 4)
            if asked
            else None
        )
        summary["retaken_scenes"] = sum(r.captures_sent > 1 for r in asked)
        verified_at = [r.time_to_verified_s for r in asked if r.time_to_verified_s is not None]
        summary["time_to_verified_s_p50"] = _percentile(verified_at, 50)
        summary["time_to_verified_s_p90"] = _percentile(verified_at, 90)
    return summary


def bench_capture(
    scenes_dir: Path,
    *,
    gallery: Path | None = None,
    recognizer: str = DEFAULT_RECOGNIZER,
    photos_per_traveller: int = 1,
    vision: VisionConfig | None = None,
    limits: QualityThresholds | None = None,
    on_scene: Callable[[SceneResult], object] | None = None,
    progress: Progress = SILENT,
) -> dict:
    """Run every scene of ``scenes_dir``; the summary (``gatectl bench capture --json``).

    Raises ``ValueError`` for a folder that is not there or holds no scene, and
    ``appliance.errors.ModelError`` when the detector cannot load.
    """
    scenes_dir = Path(scenes_dir)
    if not scenes_dir.is_dir():
        raise ValueError(f"{scenes_dir} is not a folder of scenes (<scene>/video.avi + scene.json)")
    folders = scene_folders(scenes_dir)
    if not folders:
        raise ValueError(f"no scene folders in {scenes_dir}")
    vision = vision or VisionConfig()
    limits = limits or QualityThresholds()
    cv2.setNumThreads(1)
    detector, rules = vision_parts(vision)
    warm = np.full((720, 1280, 3), 118, np.uint8)
    for _ in range(3):  # first inferences allocate; a running camera pipeline is warm
        detector.detect(warm)
    reference = None
    if gallery is not None:
        from testbed.bench.reference_gallery import ReferenceGallery

        live_photos = set()
        for folder in folders:
            try:
                photo = read_scene_info(folder).photo
            except SceneFormatError:
                continue
            if photo:
                live_photos.add(photo)
        reference = ReferenceGallery(
            gallery,
            exclude=live_photos,
            recognizer=recognizer,
            progress=progress,
            photos_per_traveller=photos_per_traveller,
        )
    results = []
    try:
        with progress.bar("scenes", total=len(folders), unit="scene") as bar:
            for folder in folders:
                selector = FrameSelector(
                    detector, limits, rules, window_frames=vision.capture_window_frames
                )
                verify = reference.verify_capture if reference is not None else None
                result = run_scene(
                    folder, selector, verify, face_exposure_ev=vision.face_exposure_ev
                )
                if reference is not None and result.expect == "capture":
                    _verify_source_photo(reference, result, folder)
                    _verify_nearest_frame(reference, result, folder, detector, rules)
                results.append(result)
                bar.update()
                if on_scene is not None:
                    on_scene(result)
    finally:
        if reference is not None:
            reference.close()
    summary = summarise(results, with_gallery=reference is not None)
    summary["detector"] = getattr(detector, "variant", "?")
    summary["tracking"] = vision.tracking
    summary["exposure_correction"] = vision.exposure_correction
    summary["steady_frames"] = vision.steady_frames
    summary["face_exposure_ev"] = vision.face_exposure_ev
    return summary


def _nearest_index(truth: dict | None) -> tuple[int, tuple[float, ...]] | None:
    """The frame (0-based) where truth.json's traveller face is widest, and that box."""
    traveller = (truth or {}).get("faces", {}).get("traveller")
    boxes = traveller.get("boxes") if isinstance(traveller, dict) else None
    known = [
        (box[2] - box[0], index, tuple(box))
        for index, box in enumerate(boxes if isinstance(boxes, list) else [])
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
    ]
    if not known:
        return None
    _, index, box = max(known)
    return index, box


def _verify_nearest_frame(
    reference, result: SceneResult, folder: Path, detector: Detector, rules: SelectionRules
) -> None:
    """The matcher's answer for the frame where the traveller is nearest (truth.json's
    widest box), detected, measured, cropped and toned as a capture would be: what the
    best-timed capture could reach in the scene's light. No face found there: False."""
    nearest = _nearest_index(read_truth(folder))
    if nearest is None or not reference.enrolled(result.identity):
        return
    index, box = nearest
    capture = cv2.VideoCapture(str(video_of(folder)))
    frame = None
    try:
        for _ in range(index + 1):
            if frame is not None:
                frame.fill(0)  # the frames before it are wiped as the gate wipes them
            ok, frame = capture.read()
            if not ok:
                return
    finally:
        capture.release()
    try:
        look = getattr(detector, "detect_zone", detector.detect)
        faces = [face for face in look(frame) if iou(face.box, box) >= 0.3]
        report = assess(frame, faces, exposure_correction=rules.exposure_correction)
        if report.face is None:
            result.nearest_verified = False
        else:
            chosen = Selection(frame, report, index + 1, None, frame_index=index + 1)
            result.nearest_verified = bool(reference.verify_capture(result.identity, chosen))
    finally:
        frame.fill(0)


def _verify_source_photo(reference, result: SceneResult, folder: Path) -> None:
    """The matcher's own answer for the scene's source photo; a traveller of the gallery
    who was not captured counts as not verified."""
    if not reference.enrolled(result.identity):
        return
    if result.verified is None:
        result.verified = False
    photo = reference.photo_of(result.identity, read_scene_info(folder).photo)
    if photo is not None:
        result.photo_verified = reference.verify_photo(result.identity, photo)


__all__ = ["DEFAULT_FPS", "SceneResult", "bench_capture", "run_scene", "summarise"]

"""Tracking: find the traveller once on the whole capture zone, then follow the face.

The full-range model on the whole zone costs about 4.5 ms a frame at 720p; the
short-range model on a square around the face found in the last frame about 1.5 ms
(the face then fills the model's input the way that model expects, and its keypoints
are finer: a 70 px face is 19 px wide in the full-range model's input, 53 px in the
region's). So the zone is searched only to acquire a face, to re-acquire one the region
search lost, and every ``refresh_frames`` frames so that a newcomer (a companion
stepping up, someone nearer crossing in front) is seen within a sixth of a second. A
refresh searches the region too: the followed face keeps its region measurement (no
jump in its keypoints between the two models, which would read as motion), and a far
face the full-range model misses now and then is not dropped at once; only after
``UNSEEN_REFRESHES`` refreshes in a row without the zone model seeing it (so the
short-range model never follows something on its own for long). The nearest face of the
zone is the traveller: if a refresh finds a larger face than the followed one, that
one is followed from then on.

While nobody is in view, the zone is searched only when it changed: each frame's zone
is shrunk to 1/8 (an average over 8x8 pixels, about 0.4 ms) and compared with the one
of the last frame searched and found empty; a frame that differs nowhere by more than
``IDLE_CHANGE`` grey levels is that empty zone again (a face of 40 px changes a 5x5
patch of it far more), and at least every ``IDLE_MAX_FRAMES`` frames the zone is
searched anyway. A lane that keeps changing with nobody in it (people walking past
beyond the gate) is searched on every other frame once every kind of search below has
found not even a possible face there: a traveller stepping in is found a frame later,
and is still far too small to capture for a second or more (one whom the zone model
scores low, far off in a noisy picture, is a possible face already, and is looked for
on every frame). That small picture of the empty lane is the only image kept between
frames; it is zeroized when replaced, when a face is found and on ``reset``.

The search for a traveller is bracketed, one kind of search per frame in turn: the
full-range model as it is; with ``shadow_gamma``, the same through that tone curve (a
face in shadow before a bright window, which the camera's exposure leaves dark); and
the short-range model on the whole zone (about 1.5 ms), which finds a large face at the
gate that the full-range model, made for small ones, scores low when it is dark. So a
traveller is found within two or three frames whatever the light (twice that in a
lane already found empty that keeps moving), at a lower cost per frame than the
full-range model alone. The zone is taken as empty only after every kind of search found
nobody. With ``shadow_gamma``, while following, a face that was dark in the last frame
is looked for through the tone curve that lifts it (``appliance.vision.tone``), however
bright the rest of the region is.

A region search returns only the followed face, and a moving empty lane's resting frame
nothing, so ``zone_searched`` tells the caller whether the last ``detect`` saw the whole
zone (``search`` says how: ``zone``, ``track``, ``idle`` or ``rest``; "is the lane
clear?" counts only frames that were looked at); before anything is sent,
``appliance.vision.selection`` checks that frame with ``detect_zone``.

Two thresholds: a face must score ``min_score`` to be found and followed, but the zone
model runs at the lower ``acquire``'s own threshold and everything it finds above that
is in ``possible_faces`` (and in what ``detect_zone`` returns): the full-range model
scores one of two people side by side at 0.4-0.6 now and then, and "is somebody else
there?" must be answered on the cautious side.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.vision.detectors.base import (
    Detector,
    Face,
    RegionDetector,
    iou,
    same_face,
    zone_view,
)
from appliance.vision.detectors.skin import only_skin
from appliance.vision.tone import face_gamma

REFRESH_FRAMES = 10  # a whole-zone search at least every 10 frames (1/3 s at 30 fps)
REGION_SCALE = 2.4  # the region's side, in face sizes: room for a step between frames
MIN_REGION_PX = 80
# A region hit is the followed face only if it is about as large and where it was
# expected to be; anything else means the track is lost and the zone is searched.
SIZE_RATIO = (0.6, 1.6)
MIN_OVERLAP = 0.2
UNSEEN_REFRESHES = 3
IDLE_SCALE = 8  # the empty zone is compared at 1/8 of its size
IDLE_CHANGE = 12  # grey levels (of an 8x8 average) that mean "something moved"
# Search an unchanged empty zone at least this often anyway: someone standing still whom
# no search found (a face in deep shadow) is looked for again, each way in turn.
IDLE_MAX_FRAMES = 10


def _centre(face: Face) -> np.ndarray:
    x0, y0, x1, y1 = face.box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2])


class TrackingDetector:
    """A :class:`Detector` that searches the zone with ``acquire`` and follows with
    ``follow`` on a region around the last face (see the module docstring)."""

    def __init__(
        self,
        acquire: Detector,
        follow: RegionDetector,
        *,
        zone_width: float | None,
        min_score: float = 0.0,
        refresh_frames: int = REFRESH_FRAMES,
        shadow_gamma: float | None = None,
    ) -> None:
        if refresh_frames < 1:
            raise ValueError("refresh_frames must be at least 1")
        self.acquire = acquire
        self.follow = follow
        self.zone_width = zone_width
        self.min_score = min_score
        self.refresh_frames = refresh_frames
        self.shadow_gamma = shadow_gamma
        self.variant = f"{acquire.variant}+{follow.variant}-tracking"
        self._empty_zone: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the followed face (a new traveller) and the picture of the empty zone."""
        self._forget_empty_zone()
        self._target: Face | None = None
        self._velocity = np.zeros(2)
        self._since_zone = 0
        self._unseen = 0  # refreshes in a row in which the zone model missed the face
        self._idle_frames = 0
        self._empty_searches = 0  # zone searches in a row that found nobody
        self._blank_searches = 0  # ... that found not even a possible face
        self.zone_searched = True
        self.possible_faces: list[Face] = []  # the last zone search, at the lower threshold
        self.last_search = "none"  # acquire | refresh | reacquire | track | idle | rest

    @property
    def search(self) -> str:
        """How the last ``detect`` looked: ``zone``, ``track`` (a region), ``idle`` (the
        empty zone again) or ``rest`` (a moving empty lane's frame not looked at)."""
        if self.last_search in ("track", "idle", "rest"):
            return self.last_search
        return "zone"

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in ``frame``: the whole zone's, or only the followed face."""
        self._since_zone += 1
        if self._target is None:
            return self._acquire(frame)
        found = self._follow(frame)
        if found is None:
            return self._zone(frame, "reacquire")
        if self._since_zone >= self.refresh_frames:
            return self._zone(frame, "refresh", found)
        self.zone_searched = False
        self.last_search = "track"
        return [found]

    def look_around(self, frame: np.ndarray, face: Face) -> list[Face]:
        """The region model on a square around where ``face`` was (someone other than the
        traveller, e.g. a companion the zone model missed); the track is left as it is."""
        height, width = frame.shape[:2]
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        side = min(max(MIN_REGION_PX, REGION_SCALE * max(face.width, face.height)), height)
        x0 = round(min(max(cx - side / 2, 0), width - side))
        y0 = round(min(max(cy - side / 2, 0), height - side))
        region = (x0, y0, x0 + round(side), y0 + round(side))
        gamma = self._face_gamma(frame, face) if self.shadow_gamma is not None else 1.0
        if gamma != 1.0:
            return self.follow.detect_region(frame, region, gamma=gamma)
        return self.follow.detect_region(frame, region)

    def search_zone_within(self, frames: int) -> None:
        """Search the whole zone within the next ``frames`` frames (someone else may be
        there), however long the refresh interval."""
        self._since_zone = max(self._since_zone, self.refresh_frames - frames)

    def detect_zone(self, frame: np.ndarray) -> list[Face]:
        """Every possible face in the whole zone of ``frame`` (the lower threshold); the
        track is left as it is (the check before sending, on a frame that may be a few
        frames old)."""
        return self.acquire.detect(frame)

    def _acquire(self, frame: np.ndarray) -> list[Face]:
        """Nobody followed: search the zone, unless it is the empty zone again."""
        zone, _ = zone_view(frame, self.zone_width)
        height, width = zone.shape[:2]
        small = cv2.resize(
            zone,
            (max(1, width // IDLE_SCALE), max(1, height // IDLE_SCALE)),
            interpolation=cv2.INTER_AREA,
        )
        empty = self._empty_zone
        if (
            empty is not None
            and empty.shape == small.shape
            and self._idle_frames < IDLE_MAX_FRAMES
            and int(cv2.absdiff(empty, small).max()) <= IDLE_CHANGE
        ):
            self._idle_frames += 1
            return self._not_searched(small, "idle")
        brackets = ("plain", "shadow", "near") if self.shadow_gamma else ("plain", "near")
        searched_last = self.last_search not in ("idle", "rest")
        if self._blank_searches >= len(brackets) and searched_last:
            return self._not_searched(small, "rest")
        kind = brackets[self._empty_searches % len(brackets)]
        if kind == "near":
            faces = self._zone(frame, "acquire", near=True)
        else:
            gamma = self.shadow_gamma if kind == "shadow" else None
            faces = self._zone(frame, "acquire", gamma=gamma)
        self._forget_empty_zone()
        self._empty_searches = 0 if faces else self._empty_searches + 1
        self._blank_searches = 0 if self.possible_faces else self._blank_searches + 1
        if faces or self._empty_searches < len(brackets):
            small.fill(0)
        else:
            self._empty_zone = small
        return faces

    def _not_searched(self, small: np.ndarray, why: str) -> list[Face]:
        """Nobody followed and the zone not searched in this frame (its small copy wiped):
        ``idle``, the empty zone again (seen, so a zone seen empty), or ``rest``, a moving
        lane that every kind of search found empty (not looked at this time)."""
        small.fill(0)
        self.zone_searched = why == "idle"
        self.possible_faces = []
        self.last_search = why
        return []

    def _forget_empty_zone(self) -> None:
        if self._empty_zone is not None:
            self._empty_zone.fill(0)
        self._empty_zone = None
        self._idle_frames = 0

    def _zone(
        self,
        frame: np.ndarray,
        why: str,
        followed: Face | None = None,
        gamma: float | None = None,
        near: bool = False,
    ) -> list[Face]:
        """Search the whole zone (through ``gamma`` if given; with the short-range model if
        ``near``); ``followed`` (this frame's region result) stands for the zone face it
        overlaps."""
        if near:
            zone, left = zone_view(frame, self.zone_width)
            region = (left, 0, left + zone.shape[1], zone.shape[0])
            possible = self.follow.detect_region(frame, region)
        elif gamma is not None:
            possible = self.acquire.detect(frame, gamma=gamma)
        else:
            possible = self.acquire.detect(frame)
        faces = [f for f in possible if f.score >= self.min_score]
        if followed is not None:
            others = [f for f in faces if not same_face(f, followed)]
            self._unseen = 0 if len(others) < len(faces) else self._unseen + 1
            if self._unseen < UNSEEN_REFRESHES:
                faces = [followed, *others]
                possible = [followed, *(f for f in possible if not same_face(f, followed))]
            else:
                faces = others
        else:
            self._unseen = 0
        self.possible_faces = possible
        # Only a face that can be skin is followed (checked here, on each whole-zone
        # search, not on every region search: about 0.13 ms a frame); every face found is
        # returned, so the caller's "is anyone else there?" still sees a painted one.
        travellers = only_skin(frame, faces)
        nearest = max(travellers, key=lambda f: f.area) if travellers else None
        if nearest is None or self._target is None:
            self._velocity = np.zeros(2)
        elif followed is None or nearest is not followed:  # else the region moved it already
            self._velocity = 0.5 * self._velocity + 0.5 * (_centre(nearest) - _centre(self._target))
        if nearest is not None:
            self._forget_empty_zone()
        self._target = nearest
        self._since_zone = 0
        self.zone_searched = True
        self.last_search = why
        return faces

    def _region(self, frame: np.ndarray, target: Face) -> tuple[int, int, int, int]:
        height, width = frame.shape[:2]
        centre = _centre(target) + self._velocity
        side = min(max(MIN_REGION_PX, REGION_SCALE * max(target.width, target.height)), height)
        x0 = round(min(max(centre[0] - side / 2, 0), width - side))
        y0 = round(min(max(centre[1] - side / 2, 0), height - side))
        return x0, y0, x0 + round(side), y0 + round(side)

    @staticmethod
    def _face_gamma(frame: np.ndarray, face: Face) -> float:
        """The lift for where ``face`` was (its mean grey, sampled), 1.0 if not dark."""
        height, width = frame.shape[:2]
        x0, y0 = max(int(face.box[0]), 0), max(int(face.box[1]), 0)
        x1, y1 = min(int(face.box[2]), width), min(int(face.box[3]), height)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return 1.0
        return face_gamma(float(frame[y0:y1:3, x0:x1:3].mean()))

    def _in_zone(self, frame: np.ndarray, face: Face) -> bool:
        zone, left = zone_view(frame, self.zone_width)
        return left <= _centre(face)[0] < left + zone.shape[1]

    def _follow(self, frame: np.ndarray) -> Face | None:
        target = self._target
        assert target is not None
        shift = self._velocity
        expected = (
            target.box[0] + shift[0],
            target.box[1] + shift[1],
            target.box[2] + shift[0],
            target.box[3] + shift[1],
        )
        best, best_overlap = None, MIN_OVERLAP
        region = self._region(frame, target)
        gamma = self._face_gamma(frame, target) if self.shadow_gamma is not None else 1.0
        if gamma != 1.0:
            found = self.follow.detect_region(frame, region, gamma=gamma)
        else:
            found = self.follow.detect_region(frame, region)
        for face in found:
            ratio = face.width / max(target.width, 1e-6)
            overlap = iou(face.box, expected)
            if SIZE_RATIO[0] < ratio < SIZE_RATIO[1] and overlap >= best_overlap:
                best, best_overlap = face, overlap
        if best is None or not self._in_zone(frame, best):
            return None
        self._velocity = 0.5 * self._velocity + 0.5 * (_centre(best) - _centre(target))
        self._target = best
        return best


__all__ = [
    "IDLE_CHANGE",
    "IDLE_MAX_FRAMES",
    "IDLE_SCALE",
    "MIN_OVERLAP",
    "MIN_REGION_PX",
    "REFRESH_FRAMES",
    "REGION_SCALE",
    "SIZE_RATIO",
    "UNSEEN_REFRESHES",
    "TrackingDetector",
]

"""Face-metered exposure: the camera exposes for the traveller's face, not the hall.

A camera's auto-exposure meters the whole scene. With a bright facade or a window behind
the traveller it exposes for the glare, and the face is recorded in a few dark grey
levels; the tone curve (``appliance.vision.tone``) can lift them, but not bring back
levels the sensor never recorded. On the scene bench, raising the exposure one stop
brought backlit travellers' first captures from 2 to 6 of 10 verified (seed 23), where
two stops clipped the face until the traveller was near. So the controller asks the
camera for one stop more when the face it follows stays dark, and gives it back when the
face is too bright, when nobody has been in view for a while, and when the next
traveller's capture begins (``CaptureProgress.frame`` 1): one traveller's hood or dark
card does not leave the camera brighter for the people after them.

:class:`FaceMeteredExposure` is a ``FrameSelector`` observer: it reads the face's grey
level as the camera recorded it (``CaptureProgress.face_grey``, before any tone curve)
and calls ``set_exposure_compensation`` on the camera (:class:`ExposureControl`). It
never sees pixels, and what it can ask for is bounded by ``max_ev``: a traveller who
hides their face or holds up something dark gets at most ``max_ev`` stops.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from appliance.vision.progress import CaptureProgress
from appliance.vision.tone import DARK_FACE_MEAN

log = logging.getLogger("gate.camera.exposure")

# Two stops clipped backlit faces on the bench until the traveller was near.
MAX_EV = 2.0


@runtime_checkable
class ExposureControl(Protocol):
    """A camera whose exposure can be biased (in stops, 0: its own metering).

    ``controls_exposure`` is false for a source that passes requests on to a camera
    without the control (an OpenCV device behind a pump): it would ignore them."""

    controls_exposure: bool

    def set_exposure_compensation(self, ev: float) -> None: ...


class FaceMeteredExposure:
    """Steps the camera's exposure compensation by the followed face's grey level.

    Up one ``step_ev`` (to at most ``max_ev``) after ``raise_after`` consecutive frames
    with the face darker than ``dark_below``; down one step after ``lower_after`` frames
    brighter than ``bright_above``; back to 0 after ``release_after`` frames with no face.
    After a change the next ``settle_frames`` frames are not counted: they still show the
    old exposure while the camera's own loop converges (a few frames on libcamera), and
    counting them would step again before the first step was seen. The thresholds are
    the tone curve's: a face below ``DARK_FACE_MEAN``'s top is one the curve would have
    to lift.
    """

    def __init__(
        self,
        camera: ExposureControl,
        *,
        max_ev: float = 1.0,
        step_ev: float | None = None,  # default: one stop, or max_ev if less
        dark_below: float = DARK_FACE_MEAN[1],
        bright_above: float = 200.0,
        raise_after: int = 3,
        lower_after: int = 2,
        release_after: int = 30,
        settle_frames: int = 8,
    ) -> None:
        step_ev = min(1.0, max_ev) if step_ev is None else step_ev
        if not 0 < max_ev <= MAX_EV or not 0 < step_ev <= max_ev:
            raise ValueError(f"need 0 < step_ev <= max_ev <= {MAX_EV} stops")
        if not dark_below < bright_above:
            raise ValueError("dark_below must be below bright_above")
        if min(raise_after, lower_after, release_after) < 1 or settle_frames < 0:
            raise ValueError(
                "raise_after, lower_after and release_after must be >= 1, settle_frames >= 0"
            )
        self.camera = camera
        self.max_ev = max_ev
        self.step_ev = step_ev
        self.dark_below = dark_below
        self.bright_above = bright_above
        self.raise_after = raise_after
        self.lower_after = lower_after
        self.release_after = release_after
        self.settle_frames = settle_frames
        self.ev = 0.0
        self._dark = self._bright = self._empty = 0
        self._settling = 0  # frames still to skip after a change

    def __call__(self, progress: CaptureProgress) -> None:
        if progress.frame == 1:  # a new traveller's capture: the camera's own metering
            self._dark = self._bright = self._empty = self._settling = 0
            if self.ev != 0.0:
                self._set(0.0, "next traveller")
            return
        if self._settling:
            self._settling -= 1
            return
        grey = progress.face_grey
        if grey is None:
            self._dark = self._bright = 0
            self._empty += 1
            if self._empty >= self.release_after and self.ev != 0.0:
                self._set(0.0, "nobody in view")
            return
        self._empty = 0
        self._dark = self._dark + 1 if grey < self.dark_below else 0
        self._bright = self._bright + 1 if grey > self.bright_above else 0
        if self._dark >= self.raise_after and self.ev < self.max_ev:
            self._set(min(self.max_ev, self.ev + self.step_ev), f"face grey {grey:.0f}")
        elif self._bright >= self.lower_after and self.ev > 0.0:
            self._set(max(0.0, self.ev - self.step_ev), f"face grey {grey:.0f}")

    def _set(self, ev: float, why: str) -> None:
        self._dark = self._bright = 0
        try:
            self.camera.set_exposure_compensation(ev)
        except Exception as exc:  # the camera's exposure is a help, never a stop
            log.warning("exposure compensation %+.1f EV refused: %s", ev, exc)
            return
        log.info("exposure compensation %+.1f EV (%s)", ev, why)
        self.ev = ev
        self._settling = self.settle_frames


def face_metered_exposure(source: object, max_ev: float) -> FaceMeteredExposure | None:
    """The controller for ``source`` (register it with ``FrameSelector.add_observer``), or
    None when the source has no exposure control or ``max_ev`` is 0 (off)."""
    if max_ev <= 0 or not isinstance(source, ExposureControl) or not source.controls_exposure:
        return None
    return FaceMeteredExposure(source, max_ev=max_ev)


__all__ = ["MAX_EV", "ExposureControl", "FaceMeteredExposure", "face_metered_exposure"]

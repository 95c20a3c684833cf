"""Is the lane clear? The unattended gate's rule before it takes the next traveller."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.vision.camera import FrameSource
    from appliance.vision.detectors import Detector

CLEAR_LANE_FRAMES = 15  # half a second of a 30 fps camera with nobody in view


def lane_clears(source: FrameSource, detector: Detector, stop: threading.Event) -> bool:
    """Read frames until ``CLEAR_LANE_FRAMES`` in a row show no face (True), or the source
    ends or ``stop`` is set (False only on stop). A frame the detector did not look at (a
    tracker resting in a moving lane) counts neither way. Each frame is zeroized once
    looked at; nothing is captured or sent, so an opted-out face is never captured on its
    way out."""
    clear = 0
    while clear < CLEAR_LANE_FRAMES:
        if stop.is_set():
            return False
        frame = source.read()
        if frame is None:
            return not getattr(source, "live", False)  # a replay that ended: nobody left
        try:
            if detector.detect(frame):
                clear = 0
            elif getattr(detector, "zone_searched", True):
                clear += 1
        finally:
            frame.fill(0)
    return True


__all__ = ["CLEAR_LANE_FRAMES", "lane_clears"]

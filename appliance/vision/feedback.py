"""What the traveller is told to do, as a stable key and an English sentence.

The key (``Feedback.STEP_CLOSER == "step_closer"``) is what a screen or an indicator
picks its words, icon or language by; ``text`` is the default English sentence, used in
logs and referral reasons. ``FEEDBACK`` maps each quality measure that can fail to the
advice that fixes it.
"""

from __future__ import annotations

import enum


class Feedback(enum.StrEnum):
    LOOK_AT_CAMERA = "look_at_camera"
    STEP_CLOSER = "step_closer"
    ONE_AT_A_TIME = "one_at_a_time"
    STEP_TO_CENTRE = "step_to_centre"
    HOLD_STILL = "hold_still"
    FACE_THE_LIGHT = "face_the_light"

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    Feedback.LOOK_AT_CAMERA: "look at the camera",
    Feedback.STEP_CLOSER: "step closer",
    Feedback.ONE_AT_A_TIME: "one at a time",
    Feedback.STEP_TO_CENTRE: "step to the centre",
    Feedback.HOLD_STILL: "hold still",
    Feedback.FACE_THE_LIGHT: "face the camera, no hat or sunglasses",
}

# The advice for each failing measure (``appliance.vision.quality``), in the order the
# quality gate reports failures: the first failure speaks.
FEEDBACK = {
    "no_face": Feedback.LOOK_AT_CAMERA,
    "inter_eye_distance": Feedback.STEP_CLOSER,
    "single_face": Feedback.ONE_AT_A_TIME,
    "inside_frame": Feedback.STEP_TO_CENTRE,
    "centre": Feedback.STEP_TO_CENTRE,
    "roll": Feedback.LOOK_AT_CAMERA,
    "yaw": Feedback.LOOK_AT_CAMERA,
    "pitch": Feedback.LOOK_AT_CAMERA,
    "sharpness": Feedback.HOLD_STILL,
    "motion": Feedback.HOLD_STILL,
    "exposure": Feedback.FACE_THE_LIGHT,
    "clipping": Feedback.FACE_THE_LIGHT,
    "contrast": Feedback.FACE_THE_LIGHT,
}

__all__ = ["FEEDBACK", "Feedback"]

"""People as sprites: a person cut out of a face photo, standing on a drawn body.

A photo is brought to the layout of an LFW portrait (250x250, face 70-160 px wide) so
any folder of face photos works the same; the person is cut out with GrabCut seeded by
a head-and-shoulders prior (the prior itself when the cut is implausible), the matte is
feathered, and a drawn neck, jacket and legs in the photo's clothing colour continue
the body below the photo so nobody is a floating head. Sprites are linear premultiplied
BGRA with a mip pyramid, so a person 3 m away is drawn from a smaller level.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.vision.detectors.base import Face
from appliance.vision.detectors.onnx_runtime import OnnxFaceDetector
from appliance.vision.quality import head_pose
from testbed.scene_generator.optics import TO_LINEAR, to_linear

PORTRAIT = 250  # side of the portrait layout (LFW's)
PORTRAIT_FACE_PX = 110.0  # face width a photo is scaled to when it is outside 70-160 px
PAD_X, PAD_BOTTOM = 110, 900  # canvas around the portrait for the shoulders and the body
SKIN = (120, 150, 190)


@functools.cache
def portrait_detector() -> OnnxFaceDetector:
    """BlazeFace short range: in a portrait the face fills the image."""
    return OnnxFaceDetector("short", min_score=0.5)


def main_face(photo: np.ndarray) -> Face | None:
    """The face the photo is of: of the faces at least half as wide as the widest, the one
    nearest the photo's centre. A dataset photo centres its subject, and LFW's crowd shots
    can hold a bigger face cut by the edge (the largest face put the wrong person in a
    scene labelled with the subject's name)."""
    faces = portrait_detector().detect(photo)
    if not faces:
        return None
    height, width = photo.shape[:2]
    widest = max(face.width for face in faces)

    def off_centre(face: Face) -> float:
        x0, y0, x1, y1 = face.box
        return math.hypot((x0 + x1 - width) / 2, (y0 + y1 - height) / 2)

    return min((face for face in faces if face.width >= 0.5 * widest), key=off_centre)


def as_portrait(photo: np.ndarray) -> np.ndarray:
    """``photo`` in the LFW layout: 250x250 with the face 70-160 px wide near the centre.

    An LFW-sized photo is returned as it is; any other is scaled so the face is 110 px
    wide and cut (or padded with its edge colour) to 250x250 around the face. The input
    is not modified; the caller zeroizes both.
    """
    face = main_face(photo)
    if face is None:
        raise ValueError("no face found")
    height, width = photo.shape[:2]
    if (height, width) == (PORTRAIT, PORTRAIT) and 70 <= face.width <= 160:
        return photo.copy()
    scale = PORTRAIT_FACE_PX / face.width
    scaled = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cx = (face.box[0] + face.box[2]) / 2 * scale
    cy = (face.box[1] + face.box[3]) / 2 * scale
    left, top = round(cx - PORTRAIT / 2), round(cy - 0.48 * PORTRAIT)
    pad = PORTRAIT
    padded = cv2.copyMakeBorder(scaled, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    out = padded[top + pad : top + pad + PORTRAIT, left + pad : left + pad + PORTRAIT].copy()
    scaled.fill(0)
    padded.fill(0)
    return out


def photo_pose(face: Face) -> tuple[float, float, float]:
    return head_pose(face)


def ellipse(mask: np.ndarray, centre, axes, value: int = 255) -> None:
    cv2.ellipse(
        mask,
        (round(centre[0]), round(centre[1])),
        (max(1, round(axes[0])), max(1, round(axes[1]))),
        0,
        0,
        360,
        value,
        -1,
        cv2.LINE_AA,
    )


def _body(shape, cx, chin, fw, fh, clothing, skin, rng) -> tuple[np.ndarray, np.ndarray]:
    """Neck, shoulders, jacket and legs below ``chin`` (canvas pixels), shaded like a body.

    Proportions of an adult in face widths (0.16 m): shoulders 2.7 wide, chin to waist
    3.4, waist to the floor 6; the camera at 1.6 m sees the legs of someone 3 m away.
    """
    h, w = shape
    width = rng.uniform(0.92, 1.12)
    shoulder_y = chin + 0.5 * fh * rng.uniform(0.9, 1.15)
    half = 1.32 * fw * width
    waist_y = chin + 3.4 * fw
    jacket = np.zeros((h, w), np.uint8)
    outline = [
        [cx - 0.38 * fw, chin + 0.15 * fh],  # collar
        [cx + 0.38 * fw, chin + 0.15 * fh],
        [cx + 1.0 * fw * width, chin + 0.42 * fh],  # shoulder slope
        [cx + half, shoulder_y + 0.25 * fh],
        [cx + 1.18 * fw * width, waist_y + 0.5 * fw],
        [cx - 1.18 * fw * width, waist_y + 0.5 * fw],
        [cx - half, shoulder_y + 0.25 * fh],
        [cx - 1.0 * fw * width, chin + 0.42 * fh],
    ]
    cv2.fillPoly(jacket, [np.round(np.array(outline)).astype(np.int32)], 255, cv2.LINE_AA)
    jacket = cv2.GaussianBlur(jacket, (0, 0), 0.12 * fw)  # rounded shoulders
    jacket = np.where(jacket > 100, 255, 0).astype(np.uint8)
    neck = np.zeros((h, w), np.uint8)
    cv2.rectangle(
        neck,
        (round(cx - 0.3 * fw), round(chin - 0.35 * fh)),
        (round(cx + 0.3 * fw), round(chin + 0.3 * fh)),
        255,
        -1,
    )
    legs = np.zeros((h, w), np.uint8)
    gap = 0.12 * fw
    for side in (-1, 1):
        leg = [
            [cx + side * gap, waist_y + 1.6 * fw],
            [cx + side * 1.08 * fw * width, waist_y],
            [cx + side * 0.85 * fw * width, h],
            [cx + side * gap, h],
        ]
        cv2.fillPoly(legs, [np.round(np.array(leg)).astype(np.int32)], 255, cv2.LINE_AA)
    cv2.rectangle(
        legs,
        (round(cx - 1.08 * fw * width), round(waist_y)),
        (round(cx + 1.08 * fw * width), round(waist_y + 1.6 * fw)),
        255,
        -1,
    )
    masks = [
        cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 1.5) for m in (legs, jacket, neck)
    ]
    xs = (np.arange(w, dtype=np.float32) - cx) / max(half, 1.0)
    across = 0.72 + 0.28 * np.cos(np.clip(xs, -1.2, 1.2) * (math.pi / 2.4))
    texture = rng.standard_normal((h // 2, w // 2)).astype(np.float32)
    texture = cv2.GaussianBlur(texture, (0, 0), 3) * 0.35
    shade = across[None, :] * (1.0 + np.clip(cv2.resize(texture, (w, h)), -0.15, 0.15))
    trousers_palette = [[40, 30, 25], [60, 60, 60], [90, 40, 30], [110, 150, 165], [35, 35, 40]]
    trousers = rng.choice(trousers_palette) * rng.uniform(0.8, 1.2)
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    for mask, colour in zip(masks, (trousers, clothing, skin), strict=True):  # far to near
        linear = TO_LINEAR[np.clip(np.asarray(colour), 0, 255).astype(np.uint8)]
        rgb = rgb * (1 - mask[..., None]) + (shade * mask)[..., None] * linear[None, None, :]
        alpha = alpha * (1 - mask) + mask
    return rgb.astype(np.float32), alpha


@dataclass
class Sprite:
    """A person (or a poster) in linear premultiplied BGRA, with a mip pyramid."""

    levels: list[np.ndarray]
    anchor: np.ndarray  # eye midpoint in level-0 pixels
    face_w: float  # BlazeFace box width in level-0 pixels
    face_box: np.ndarray | None  # (4,) level-0 box; None: no visible face
    name: str = ""

    @classmethod
    def from_canvas(cls, rgba: np.ndarray, anchor, face_w, face_box, name="") -> Sprite:
        # Crop to where there is something (less to warp and composite), keep a margin.
        rows = np.flatnonzero(rgba[..., 3].max(axis=1) > 1e-3)
        cols = np.flatnonzero(rgba[..., 3].max(axis=0) > 1e-3)
        top, left = max(int(rows[0]) - 4, 0), max(int(cols[0]) - 4, 0)
        rgba = np.ascontiguousarray(rgba[top : int(rows[-1]) + 5, left : int(cols[-1]) + 5])
        anchor = np.asarray(anchor, np.float64) - [left, top]
        if face_box is not None:
            face_box = np.asarray(face_box, np.float64) - [left, top, left, top]
        levels = [rgba]
        while min(levels[-1].shape[:2]) > 64:
            levels.append(cv2.pyrDown(levels[-1]))
        return cls(levels, np.asarray(anchor, np.float64), float(face_w), face_box, name)

    def wipe(self) -> None:
        """Zeroize the pixels (the sprite holds a person's photo)."""
        for level in self.levels:
            level.fill(0)


def _face_up_to_the_forehead(mask: np.ndarray, keypoints: np.ndarray) -> bool:
    """Mark the face from the chin to mid-forehead, along the eye line: GrabCut cut white
    hair on a pale wall, or a headband, through the forehead, and a traveller without a
    forehead is not one a camera sees. Measured from the eyes and mouth, not the box,
    whose top is at the brow in one photo and the hairline in another. False: the
    keypoints are degenerate and nothing was marked."""
    right_eye, left_eye, _, mouth = keypoints[:4].astype(np.float64)
    eyes = (right_eye + left_eye) / 2
    eye_to_mouth = float(np.linalg.norm(mouth - eyes))
    across = float(np.linalg.norm(left_eye - right_eye))
    if eye_to_mouth < 1 or across < 1:
        return False
    down = (mouth - eyes) / eye_to_mouth
    top, bottom = eyes - 0.8 * eye_to_mouth * down, mouth + 0.5 * eye_to_mouth * down
    centre = (top + bottom) / 2
    tilt = math.degrees(math.atan2(down[1], down[0])) - 90
    cv2.ellipse(
        mask,
        (round(centre[0]), round(centre[1])),
        (max(1, round(0.85 * across)), max(1, round(1.15 * eye_to_mouth))),
        tilt,
        0,
        360,
        255,
        -1,
    )
    return True


def _funnelling_wedges(photo: np.ndarray) -> np.ndarray:
    """The black wedges that LFW's deep funnelling leaves at a photo's edges: near-black
    regions that touch the border. A near-black pupil, nostril or open mouth is not one
    (cutting them out had left holes in faces)."""
    dark = (photo.max(axis=2) < 10).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, border[border > 0])


def _matte(photo: np.ndarray, face: Face, rng) -> tuple[np.ndarray, str]:
    """Soft foreground matte of the person in a portrait, and how it was made."""
    h, w = photo.shape[:2]
    keypoints = face.keypoints
    x0, y0, x1, y1 = np.array(face.box, np.float64)
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    prior = np.zeros((h, w), np.uint8)
    ellipse(prior, (cx, cy - 0.15 * fh), (0.66 * fw, 0.86 * fh))
    neck = (round(cx - 0.4 * fw), round(cy)), (round(cx + 0.4 * fw), round(y1 + 0.4 * fh))
    cv2.rectangle(prior, *neck, 255, -1)
    ellipse(prior, (cx, y1 + 0.75 * fh), (1.55 * fw, 0.55 * fh))
    cv2.rectangle(
        prior, (round(cx - 1.55 * fw), round(y1 + 0.75 * fh)), (round(cx + 1.55 * fw), h), 255, -1
    )
    sure = np.zeros((h, w), np.uint8)
    if not _face_up_to_the_forehead(sure, keypoints):
        ellipse(sure, (cx, cy + 0.05 * fh), (0.33 * fw, 0.42 * fh))  # the box's middle
    throat = (round(cx - 0.15 * fw), round(y1)), (round(cx + 0.15 * fw), round(y1 + 0.3 * fh))
    cv2.rectangle(sure, *throat, 255, -1)
    cv2.rectangle(
        sure, (round(cx - 0.5 * fw), round(y1 + 0.35 * fh)), (round(cx + 0.5 * fw), h - 1), 255, -1
    )
    mask = np.full((h, w), cv2.GC_BGD, np.uint8)
    mask[cv2.dilate(prior, np.ones((25, 25), np.uint8)) > 0] = cv2.GC_PR_BGD
    mask[prior > 127] = cv2.GC_PR_FGD
    mask[:3, :] = cv2.GC_BGD
    mask[:, :3] = cv2.GC_BGD
    mask[:, -3:] = cv2.GC_BGD
    wedge = _funnelling_wedges(photo)
    mask[wedge] = cv2.GC_BGD
    mask[sure > 127] = cv2.GC_FGD
    how = "grabcut"
    try:
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(int(rng.integers(1 << 30)))
        # At half resolution (4x faster); the cut is upsampled and feathered afterwards.
        small = cv2.resize(photo, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
        cv2.grabCut(small, small_mask, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
        small.fill(0)
        cut = ((small_mask == cv2.GC_FGD) | (small_mask == cv2.GC_PR_FGD)).astype(np.float32)
        fg = (cv2.resize(cut, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
        count, labels = cv2.connectedComponents(fg)
        core = labels[sure > 127]
        keep = 0
        if count > 1 and (core > 0).any():
            keep = np.bincount(core[core > 0], minlength=count).argmax()
        fg = (labels == keep) & (keep > 0)
        ratio = fg.sum() / max(1, (prior > 127).sum())
        if not 0.45 <= ratio <= 1.25:
            raise ValueError(f"implausible cut-out ({ratio:.2f} of the prior)")
    except (cv2.error, ValueError):
        fg, how = prior > 127, "prior"
    soft = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 1.3)
    return soft * (~wedge), how


def _clothing_colour(photo: np.ndarray, matte: np.ndarray, box) -> np.ndarray:
    x0, _, x1, _ = box
    cx, fw = (x0 + x1) / 2, x1 - x0
    h = photo.shape[0]
    columns = slice(max(0, int(cx - 0.9 * fw)), int(cx + 0.9 * fw))
    band = photo[int(h * 0.86) :, columns]
    chosen = matte[int(h * 0.86) :, columns] > 0.8
    if chosen.sum() < 50:
        return np.array([60, 60, 70], np.float64)
    return np.median(band[chosen], axis=0)


def person_sprite(portrait: np.ndarray, rng, name: str = "") -> tuple[Sprite, dict]:
    """The person of a portrait, cut out, on a drawn body; and facts for truth.json."""
    face = main_face(portrait)
    if face is None:
        raise ValueError(f"no face in {name}")
    box = np.array(face.box, np.float64)
    matte, how = _matte(portrait, face, rng)
    h, w = portrait.shape[:2]
    ch, cw = h + PAD_BOTTOM, w + 2 * PAD_X
    fw, fh = box[2] - box[0], box[3] - box[1]
    cx = (box[0] + box[2]) / 2 + PAD_X
    rows = slice(int(box[1] + 0.3 * fh), int(box[3] - 0.2 * fh))
    cheeks = portrait[rows, int(box[0] + 0.3 * fw) : int(box[2] - 0.3 * fw)]
    skin = np.median(cheeks.reshape(-1, 3), axis=0) if cheeks.size else np.array(SKIN)
    clothing = _clothing_colour(portrait, matte, box)
    torso_rgb, torso_a = _body((ch, cw), cx, box[3], fw, fh, clothing, skin, rng)
    # The photo fades out at its cut sides and bottom into the body drawn below it.
    fade = np.ones((h, w), np.float32)
    ramp = np.linspace(0, 1, 14, dtype=np.float32)
    fade[:, :14] *= ramp[None, :]
    fade[:, -14:] *= ramp[::-1][None, :]
    fade[-30:, :] *= np.linspace(0, 1, 30, dtype=np.float32)[::-1][:, None]
    photo_alpha = np.zeros((ch, cw), np.float32)
    photo_alpha[:h, PAD_X : PAD_X + w] = matte * fade
    rgb = np.zeros((ch, cw, 3), np.float32)
    rgb[:h, PAD_X : PAD_X + w] = to_linear(portrait)
    # Premultiplied "photo over body": the body shows where the cut-out photo does not.
    alpha = photo_alpha + torso_a * (1 - photo_alpha)
    colour = rgb * photo_alpha[..., None] + torso_rgb * (torso_a * (1 - photo_alpha))[..., None]
    rgba = np.dstack([colour, alpha]).astype(np.float32)
    rgb.fill(0)
    colour.fill(0)
    eyes = face.keypoints[:2].astype(np.float64) + np.array([PAD_X, 0])
    face_box = box + np.array([PAD_X, 0, PAD_X, 0])
    sprite = Sprite.from_canvas(rgba, eyes.mean(axis=0), fw, face_box, name)
    rgba.fill(0)
    roll, yaw, pitch = photo_pose(face)
    return sprite, {"matte": how, "photo_pose": [round(roll, 1), round(yaw, 1), round(pitch, 1)]}


def body_sprite(rng) -> Sprite:
    """Someone whose face is turned away: a head seen from behind or the side, a body."""
    fw, fh = 106.0, 120.0
    ch, cw = PORTRAIT + PAD_BOTTOM, PORTRAIT + 2 * PAD_X
    cx, cy = cw / 2, 125.0
    hair = rng.choice([[25, 25, 30], [40, 50, 70], [30, 45, 60], [110, 110, 115], [60, 100, 140]])
    rgb, a = _body((ch, cw), cx, cy + 0.5 * fh, fw, fh, rng.uniform(30, 180, 3), SKIN, rng)
    head = np.zeros((ch, cw), np.uint8)
    ellipse(head, (cx, cy - 0.1 * fh), (0.62 * fw, 0.82 * fh))
    head_alpha = cv2.GaussianBlur(head.astype(np.float32) / 255, (0, 0), 1.5)
    ear = np.zeros((ch, cw), np.uint8)
    side = rng.choice([-1, 1])
    ellipse(ear, (cx + side * 0.45 * fw, cy + 0.1 * fh), (0.18 * fw, 0.3 * fh))
    ear_alpha = cv2.GaussianBlur(ear.astype(np.float32) / 255, (0, 0), 2)
    head_rgb = (
        TO_LINEAR[np.array(hair, np.uint8)] * (1 - ear_alpha[..., None])
        + TO_LINEAR[np.array(SKIN, np.uint8)] * ear_alpha[..., None]
    )
    alpha = head_alpha + a * (1 - head_alpha)
    colour = head_rgb * head_alpha[..., None] + rgb * (a * (1 - head_alpha))[..., None]
    rgba = np.dstack([colour, alpha]).astype(np.float32)
    return Sprite.from_canvas(rgba, (cx, cy), fw, None, "body")


__all__ = [
    "PORTRAIT",
    "PORTRAIT_FACE_PX",
    "SKIN",
    "Sprite",
    "as_portrait",
    "body_sprite",
    "ellipse",
    "main_face",
    "person_sprite",
    "photo_pose",
    "portrait_detector",
]

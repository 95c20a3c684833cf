"""What each tag means, and the cast: who walks up in which scene.

Tags (``expect=capture`` unless said): ``approach`` (3 m to 0.8 m, the face grows from
about 40 to 160 px), ``walk_blur`` (a brisk walk in a dim hall: long shutter, motion
blur), ``low_light`` (a few lux: longest shutter, high gain, dark and noisy),
``backlight`` (a bright glass facade behind: the face is under-exposed, with glare),
``noise`` (a noisy sensor), ``compression`` (MJPEG quality 8-18), ``clutter`` (packaged
images on the walls), ``queue_behind`` (one or two smaller people behind, shuffling),
``crossing`` (someone passes in front for a moment), and, with ``expect=no_capture``,
``two_close`` (two people side by side at the gate), ``empty`` (nobody, perhaps someone
far away with their back turned) and ``poster`` (a poster with a small face, or with
no face). Every scene but ``empty``, ``poster`` and ``two_close`` is also tagged
``approach``.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import cv2
import numpy as np

from testbed.scene_generator.backgrounds import POSTER_NONFACE, gate_background, packaged_image
from testbed.scene_generator.backgrounds import paste as paste_image
from testbed.scene_generator.motion import Layer, Walk
from testbed.scene_generator.optics import FOCAL_PX, FPS, HEIGHT, WIDTH, Camera
from testbed.scene_generator.people import (
    Sprite,
    as_portrait,
    body_sprite,
    main_face,
    person_sprite,
    photo_pose,
)
from testbed.scene_generator.render import Scene

TAGS = (
    "approach", "walk_blur", "low_light", "backlight", "noise", "compression",
    "clutter", "queue_behind", "crossing", "two_close", "empty", "poster",
)  # fmt: skip
NO_CAPTURE = frozenset({"two_close", "empty", "poster"})
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_SECONDS = 3.4


class UncastableIdentity(ValueError):
    """No photo of ``identity`` can stand for a person: unreadable, or no face found."""

    def __init__(self, identity: str) -> None:
        super().__init__(f"no usable photo of {identity} (unreadable, or no face found)")
        self.identity = identity


class Casting:
    """The photos of a dataset, and which ones can stand for a traveller looking ahead."""

    def __init__(self, dataset: Path) -> None:
        self.dataset = Path(dataset)
        self.identities = sorted(
            p.name
            for p in self.dataset.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and self._photo_paths(p)
        )
        self._poses: dict[str, list[tuple[Path, bool]]] = {}
        self._sprites: dict[str, tuple[Sprite, dict]] = {}

    @staticmethod
    def _photo_paths(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)

    def read(self, path: Path) -> np.ndarray:
        """The photo at ``path`` in the portrait layout (the caller zeroizes it)."""
        image = cv2.imread(str(path))
        if image is None:
            raise ValueError(f"cannot read {path}")
        try:
            return as_portrait(image)
        finally:
            image.fill(0)

    def photos(self, identity: str) -> list[tuple[Path, bool]]:
        """``identity``'s usable photos and whether each looks at the camera (pose well
        inside the gate's limits)."""
        if identity not in self._poses:
            entries = []
            for path in self._photo_paths(self.dataset / identity):
                try:
                    portrait = self.read(path)
                except ValueError:
                    continue  # unreadable, or no face found: not castable
                face = main_face(portrait)
                portrait.fill(0)
                if face is None:
                    continue  # found in the photo, lost once brought to the portrait layout
                roll, yaw, pitch = photo_pose(face)
                level = abs(roll) < 10 and abs(yaw) < 20 and abs(pitch) < 20
                entries.append((path, face.score > 0.7 and level))
            self._poses[identity] = entries
        return self._poses[identity]

    def pick(self, identity: str, rng, frontal: bool = True) -> Path:
        entries = self.photos(identity)
        if not entries:
            raise UncastableIdentity(identity)
        good = [p for p, ok in entries if ok] if frontal else [p for p, _ in entries]
        pool = good or [p for p, _ in entries]
        return pool[int(rng.integers(len(pool)))]

    def sprite(self, path: Path) -> tuple[Sprite, dict]:
        key = str(path)
        if key not in self._sprites:
            portrait = self.read(path)
            try:
                rng = np.random.default_rng(zlib.crc32(path.name.encode()))
                self._sprites[key] = person_sprite(portrait, rng, path.name)
            finally:
                portrait.fill(0)
        return self._sprites[key]

    def clear(self) -> None:
        """Zeroize every sprite (they hold people's photos) and forget them."""
        for sprite, _ in self._sprites.values():
            sprite.wipe()
        self._sprites.clear()


def _walk(rng, *, fast: bool = False, d1: float | None = None, x_end: float | None = None) -> Walk:
    return Walk(
        d0=rng.uniform(2.9, 3.3),
        d1=d1 if d1 is not None else rng.uniform(0.75, 0.9),
        speed=rng.uniform(1.3, 1.6) if fast else rng.uniform(1.0, 1.35),
        decel=rng.uniform(1.2, 1.8),
        x0=rng.uniform(-0.35, 0.35),
        x1=x_end if x_end is not None else rng.uniform(-0.06, 0.06),
        eye=rng.uniform(-0.18, 0.14),
        bob=rng.uniform(0.035, 0.055) if fast else rng.uniform(0.02, 0.035),
        step_hz=rng.uniform(1.8, 2.15),
        sway=rng.uniform(0.015, 0.03),
        roll0=rng.uniform(-3, 3),
        roll_amp=rng.uniform(2.0, 4.0) if fast else rng.uniform(1.0, 2.5),
        fidget=rng.uniform(0.01, 0.025) if fast else rng.uniform(0.003, 0.012),
        phase=rng.uniform(0, 2 * math.pi),
    )


def _walk_across(
    depth: float, speed: float, t0: float, eye: float, phase: float, step_hz: float
) -> Walk:
    """Someone walking across the lane at ``depth`` m, in front of its centre at ``t0``."""
    return Walk(
        d0=depth, d1=depth, speed=1.0, decel=1.0, x0=0.0, x1=0.0, eye=eye, bob=0.03,
        step_hz=step_hz, sway=0.0, roll0=0.0, roll_amp=1.0, fidget=0.0, phase=phase, t0=t0,
        lateral_speed=float(speed),
    )  # fmt: skip


def _camera(rng) -> Camera:
    """A gate camera with the usual spread of shutter, encoder, lens and sensor."""
    cam = Camera(
        exposure_s=float(rng.uniform(1 / 120, 1 / 60)),
        jpeg_quality=int(rng.integers(80, 93)),
        psf=float(rng.uniform(0.5, 0.9)),
    )
    cam.shot *= rng.uniform(0.8, 1.3)
    cam.read *= rng.uniform(0.8, 1.3)
    return cam


def _conditions(tag: str, cam: Camera, rng) -> tuple[float, bool]:
    """What ``tag`` changes in the light and the camera: (scene light, brisk walk)."""
    light, fast = 1.0, False
    if tag == "walk_blur":
        fast = True
        light = rng.uniform(0.25, 0.5)  # a dim hall: the camera picks a long shutter
        cam.exposure_s = float(rng.uniform(1 / 30, 1 / 20))
    elif tag == "low_light":
        light = rng.uniform(0.003, 0.008)  # a few lux
        cam.exposure_s = 1 / 30
        cam.max_exposure_gain = float(rng.uniform(40, 64))  # 1/30 s and gain 12-16
    elif tag == "backlight":
        cam.glare = float(rng.uniform(0.01, 0.03))
    elif tag == "noise":
        cam.gain_extra = float(rng.uniform(16, 32))
    elif tag == "compression":
        cam.jpeg_quality = int(rng.integers(8, 19))
    return light, fast


def build_scene(
    casting: Casting, tag: str, index: int, seed: int, identity: str, others: list[str]
) -> Scene:
    """Decide everything about one scene (no pixels drawn yet)."""
    rng = np.random.default_rng([seed, TAGS.index(tag), index])
    expect = "no_capture" if tag in NO_CAPTURE else "capture"
    tags = [tag] if tag in ("approach", "empty", "poster", "two_close") else [tag, "approach"]
    kind = "clutter" if tag == "clutter" else ("backlight" if tag == "backlight" else "gate")
    if tag in ("empty", "poster", "low_light") and rng.random() < 0.3:
        kind = "clutter"
    background, background_gain, background_info = gate_background(rng, kind)
    cam = _camera(rng)
    person_light = rng.uniform(0.9, 1.15)
    light, fast = _conditions(tag, cam, rng)
    info: dict = {"seed": [seed, TAGS.index(tag), index], "background": background_info}
    scene = Scene(
        f"{tag}_{index:02d}", tags, expect, identity if expect == "capture" else None, 0, [],
        background, background_gain, light, cam, info,
    )  # fmt: skip
    duration = 0.0
    if tag not in ("empty", "poster"):
        path = casting.pick(identity, rng)
        sprite, sprite_info = casting.sprite(path)
        walk = _walk(
            rng,
            fast=fast,
            d1=rng.uniform(0.9, 1.1) if tag == "two_close" else None,
            x_end=rng.uniform(-0.3, -0.2) if tag == "two_close" else None,
        )
        scene.layers.append(Layer(sprite, walk, person_light, "traveller", identity))
        if expect == "capture":
            scene.photo = path.name
        info["traveller"] = {
            "photo": path.name,
            **sprite_info,
            "walk": {k: round(v, 3) for k, v in vars(walk).items()},
        }
        duration = walk.duration() + rng.uniform(0.5, 0.9)
    if tag == "two_close":
        duration = _add_companion(scene, casting, rng, others[0])
    if tag == "queue_behind":
        _add_queue(scene, casting, rng, others, index)
    if tag == "crossing":
        _add_crosser(scene, casting, rng, others[0])
    if tag in ("empty", "poster"):
        duration = rng.uniform(2.0, 3.0)
    if tag == "poster":
        _add_poster(scene, casting, rng, others[0])
    if tag == "empty" and rng.random() < 0.5:
        sprite = body_sprite(rng)  # someone walking past far away, face turned away
        depth = rng.uniform(3.5, 6.0)
        speed = rng.uniform(0.8, 1.4) * rng.choice([-1, 1])
        eye = rng.uniform(-0.15, 0.1)
        walk = _walk_across(depth, speed, rng.uniform(0.8, 1.6), eye, 0.0, step_hz=1.9)
        scene.layers.append(Layer(sprite, walk, person_light, "passer_by", None))
        info["passer_by"] = {"depth_m": round(depth, 2)}
    scene.frames = round(min(duration, MAX_SECONDS) * FPS)
    return scene


def _add_companion(scene: Scene, casting: Casting, rng, other: str) -> float:
    """A second person at the gate beside the traveller, about as near; the duration."""
    first = scene.layers[0].walk
    path = casting.pick(other, rng)
    sprite, sprite_info = casting.sprite(path)
    walk = _walk(rng, d1=first.d1 + rng.uniform(-0.05, 0.2), x_end=rng.uniform(0.2, 0.3))
    walk.d0, walk.speed, walk.decel = first.d0 + rng.uniform(-0.1, 0.25), first.speed, first.decel
    walk.x0 = walk.x1 + rng.uniform(-0.05, 0.1)
    first.x0 = first.x1 + rng.uniform(-0.1, 0.05)
    light = scene.layers[0].light * rng.uniform(0.9, 1.1)
    scene.layers.append(Layer(sprite, walk, light, "companion", other))
    scene.info["companion"] = {"photo": path.name, **sprite_info}
    return max(first.duration(), walk.duration()) + rng.uniform(0.5, 0.9)


def _add_queue(scene: Scene, casting: Casting, rng, others: list[str], index: int) -> None:
    first = scene.layers[0]
    for k in range(int(rng.integers(1, 3))):
        path = casting.pick(others[k], rng, frontal=rng.random() < 0.7)
        sprite, sprite_info = casting.sprite(path)
        gap = rng.uniform(1.0, 1.6) + 0.6 * k
        walk = _walk(rng, d1=first.walk.d1 + gap)
        walk.d0 = first.walk.d0 + gap + rng.uniform(-0.2, 0.3)
        walk.speed = first.walk.speed * rng.uniform(0.85, 1.0)
        walk.x0 = rng.uniform(0.2, 0.5) * (1 if (k + index) % 2 == 0 else -1)
        walk.x1 = walk.x0 * rng.uniform(0.6, 1.0)
        walk.fidget = rng.uniform(0.02, 0.05)  # shuffling in the queue
        light = first.light * rng.uniform(0.8, 1.05)
        scene.layers.append(Layer(sprite, walk, light, f"behind{k + 1}", others[k]))
        scene.info[f"behind{k + 1}"] = {"photo": path.name, **sprite_info, "gap_m": round(gap, 2)}


def _add_crosser(scene: Scene, casting: Casting, rng, other: str) -> None:
    first = scene.layers[0]
    visible_face = rng.random() < 0.5
    sprite = casting.sprite(casting.pick(other, rng))[0] if visible_face else body_sprite(rng)
    depth = rng.uniform(0.6, 1.3)
    speed = rng.uniform(1.1, 1.6) * rng.choice([-1, 1])
    half_view = (WIDTH / 2 + 250) / FOCAL_PX * depth
    at_centre = rng.uniform(0.5, 1.4)  # when the crosser is in front of the lane's centre
    eye = rng.uniform(-0.2, 0.15)
    walk = _walk_across(depth, speed, at_centre, eye, rng.uniform(0, 6.3), step_hz=2.0)
    identity = other if visible_face else None
    scene.layers.append(Layer(sprite, walk, first.light, "crosser", identity))
    scene.info["crosser"] = {
        "face_visible": visible_face,
        "depth_m": round(depth, 2),
        "speed_mps": round(float(speed), 2),
        "in_view_s": round(2 * half_view / abs(speed), 2),
        "at_centre_s": round(at_centre, 2),
    }


def _add_poster(scene: Scene, casting: Casting, rng, other: str) -> None:
    """A poster on the wall behind the lane: a small face (70 %) or a picture without one."""
    if rng.random() < 0.7:
        path = casting.pick(other, rng, frontal=True)
        portrait = casting.read(path)
        face = main_face(portrait)
        target = rng.uniform(32, 62)  # face width on the poster, px
        scale = target / face.width
        picture = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        portrait.fill(0)
        caption = np.full(
            (int(picture.shape[0] * 0.35), picture.shape[1], 3), rng.uniform(20, 230, 3), np.float32
        )
        picture = np.vstack([picture.astype(np.float32), caption])
        x = int(WIDTH / 2 + rng.uniform(-260, 260) - picture.shape[1] / 2)
        y = int(HEIGHT / 2 + rng.uniform(-120, 40) - picture.shape[0] / 2)
        border = 6
        canvas = scene.background.astype(np.float32)
        paste_image(canvas, picture, x, y, border=border, colour=(240, 240, 240))
        scene.background = np.clip(canvas, 0, 255).astype(np.uint8)
        box = np.array(face.box) * scale + [x + border, y + border, x + border, y + border]
        scene.info["poster_face_box"] = [round(float(v), 1) for v in box]
        scene.info["poster_identity"] = other
        scene.info["poster"] = {"photo": path.name, "face_px": round(float(target), 1)}
        picture.fill(0)
        canvas.fill(0)
        return
    name = POSTER_NONFACE[int(rng.integers(len(POSTER_NONFACE)))]
    picture = packaged_image(name, rng)
    scale = rng.uniform(160, 320) / max(picture.shape[:2])
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = scene.background.astype(np.float32)
    x = int(WIDTH / 2 - picture.shape[1] / 2 + rng.uniform(-200, 200))
    y = int(HEIGHT / 2 - picture.shape[0] / 2 + rng.uniform(-100, 60))
    paste_image(canvas, picture.astype(np.float32), x, y, border=8)
    scene.background = np.clip(canvas, 0, 255).astype(np.uint8)
    scene.info["poster"] = {"image": name}


__all__ = [
    "MAX_SECONDS",
    "NO_CAPTURE",
    "PHOTO_SUFFIXES",
    "TAGS",
    "Casting",
    "UncastableIdentity",
    "build_scene",
]

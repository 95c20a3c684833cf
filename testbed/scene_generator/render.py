"""Render a scene to ``video.avi`` (and its ``truth.json``), frame by frame.

1. Radiance in linear light: the background (times its gain map and the scene's light)
   blurred by the lens; people composited over it, far to near.
2. Motion blur: a person whose motion within the shutter time is nearly a translation is
   drawn once and smeared along it; one that also zooms or turns (an approach close to
   the camera) is drawn at several instants of the shutter time and averaged.
3. Exposure: auto-exposure locked on a centre-weighted meter of the scene with the
   traveller at the gate, capped by the longest shutter and highest gain the scene
   allows (low light hits the cap; a bright facade pulls the exposure down). Backlight
   adds veiling glare.
4. The sensor's noise, the tone curve and the MJPEG encoder (``optics``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from testbed.scene_format import SCENE_FILE, TRUTH_FILE, VIDEO_FILE, SceneInfo, track_name
from testbed.scene_generator.motion import Layer
from testbed.scene_generator.optics import (
    AE_TARGET,
    FPS,
    HEIGHT,
    WIDTH,
    Camera,
    MjpegWriter,
    combined_noise,
    encode,
    encode_float,
    luma,
    noise_combinations,
    noise_fields,
    to_linear,
)


@dataclass
class Scene:
    """Everything decided about one scene before any pixel is drawn."""

    name: str
    tags: list[str]
    expect: str
    identity: str | None
    frames: int
    layers: list[Layer] = field(default_factory=list)
    background: np.ndarray | None = None  # sRGB uint8
    background_gain: np.ndarray | None = None
    light: float = 1.0
    camera: Camera = field(default_factory=Camera)
    info: dict = field(default_factory=dict)
    photo: str | None = None  # the traveller's photo (file name), kept out of galleries


def _bbox(matrix: np.ndarray, shape, pad: int = 0) -> tuple[int, int, int, int] | None:
    h, w = shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - pad
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1 + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, WIDTH), min(y1, HEIGHT)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _motion(layer: Layer, t: float, shutter: float) -> tuple[np.ndarray, float]:
    """Over the shutter time: (translation of the eyes in px, extra motion of points a face
    width away, i.e. zoom and rotation, in px)."""
    m0, l0, _ = layer.affine(t - shutter / 2)
    m1, l1, _ = layer.affine(t + shutter / 2)
    ax, ay = layer.sprite.anchor
    r = layer.sprite.face_w
    moves = []
    for px, py in ((ax, ay), (ax + r, ay + r), (ax - r, ay + r), (ax, ay - r)):
        p0 = m0 @ [px / 2**l0, py / 2**l0, 1]
        p1 = m1 @ [px / 2**l1, py / 2**l1, 1]
        moves.append(p1 - p0)
    shift = moves[0]
    extra = max(float(np.hypot(*(m - shift))) for m in moves[1:])
    return shift, extra


def _streak(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``image`` averaged along a straight motion of ``shift`` px (a linear blur kernel)."""
    dx, dy = float(shift[0]), float(shift[1])
    size = math.ceil(math.hypot(dx, dy)) | 1
    if abs(dy) <= 0.25 * abs(dx):
        return cv2.blur(image, (size, 1))
    if abs(dx) <= 0.25 * abs(dy):
        return cv2.blur(image, (1, size))
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    start = (round(c - dx / 2), round(c - dy / 2))
    cv2.line(kernel, start, (round(c + dx / 2), round(c + dy / 2)), 1.0, 1, cv2.LINE_AA)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel)


def _render_layers(scene: Scene, t: float, background: np.ndarray, exposure: float, blur=True):
    """The people at frame time ``t`` over the linear ``background``: (roi, linear crop)."""
    placed = []
    shutter = scene.camera.exposure_s
    for layer in scene.layers:
        shift, extra = _motion(layer, t, shutter) if blur else (np.zeros(2), 0.0)
        length = float(np.hypot(*shift))
        instants = int(min(8, max(1, math.ceil(extra / 1.2) + 1)))
        if instants > 1:
            times = [t + shutter * (i / (instants - 1) - 0.5) for i in range(instants)]
        else:
            times = [t]
        poses = [layer.affine(tt) for tt in times]
        level = poses[len(poses) // 2][1]
        matrices = [m for m, lv, _ in poses if lv == level]
        smear = instants == 1 and length > 1.0
        pad = math.ceil(length / 2) + 1 if smear else 0
        boxes = [b for m in matrices if (b := _bbox(m, layer.sprite.levels[level].shape, pad))]
        if not boxes:
            continue
        box = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        distance = layer.walk.state(t)[0]
        placed.append((distance, layer, matrices, level, box, shift if smear else None))
    if not placed:
        return None, None
    x0 = min(p[4][0] for p in placed)
    y0 = min(p[4][1] for p in placed)
    x1 = max(p[4][2] for p in placed)
    y1 = max(p[4][3] for p in placed)
    crop = background[y0:y1, x0:x1].copy()
    for _, layer, matrices, level, (bx0, by0, bx1, by1), streak in sorted(
        placed, key=lambda p: -p[0]
    ):
        source = layer.sprite.levels[level]
        acc = None
        for matrix in matrices:
            moved = matrix.copy()
            moved[0, 2] -= bx0
            moved[1, 2] -= by0
            warped = cv2.warpAffine(
                source, moved, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )  # fmt: skip
            acc = warped if acc is None else cv2.add(acc, warped)
        if len(matrices) > 1:
            acc *= 1.0 / len(matrices)
        if streak is not None:
            acc = _streak(acc, streak)
        under = crop[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
        under *= 1.0 - acc[..., 3:4]
        under += acc[..., :3] * (exposure * scene.light * layer.light)
        acc.fill(0)
    return (x0, y0, x1, y1), crop


def _auto_exposure(scene: Scene, radiance: np.ndarray) -> float:
    """Centre-weighted metering with the traveller at the gate, within the camera's cap."""
    t_end = (scene.frames - 1) / FPS
    metered_scene = radiance.copy()
    roi, crop = _render_layers(scene, t_end, metered_scene, 1.0, blur=False)
    if roi is not None:
        metered_scene[roi[1] : roi[3], roi[0] : roi[2]] = crop
    small = cv2.resize(metered_scene, (160, 90), interpolation=cv2.INTER_AREA)
    metered_scene.fill(0)
    yy, xx = np.mgrid[0:90, 0:160]
    weight = np.exp(-(((xx - 80) / 50.0) ** 2 + ((yy - 45) / 32.0) ** 2))
    metered = float((luma(small) * weight).sum() / weight.sum())
    return min(AE_TARGET / max(metered, 1e-6), scene.camera.max_exposure_gain)


def render(scene: Scene, out_dir: Path, exposure_stops: Sequence[float] = ()) -> dict:
    """Write ``video.avi``, ``scene.json`` and ``truth.json`` for ``scene``; returns truth.

    Each of ``exposure_stops`` (stops, not 0) adds an exposure track
    (``testbed.scene_format``): the same scene with the auto-exposure biased by that
    much, within the camera's cap. A track the cap leaves as bright as ``video.avi`` is
    not written: that camera cannot go brighter.
    """
    cam = scene.camera
    radiance = to_linear(scene.background) * (scene.background_gain * scene.light)[..., None]
    radiance = cv2.GaussianBlur(radiance, (0, 0), cam.psf)
    metered = _auto_exposure(scene, radiance)
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = _film(scene, radiance, metered, out_dir / VIDEO_FILE)
    tracks = {}
    for stops in exposure_stops:
        exposure = min(metered * 2.0**stops, cam.max_exposure_gain)
        if stops != 0 and exposure != metered:
            _film(scene, radiance, exposure, out_dir / track_name(stops))
            tracks[track_name(stops)] = round(exposure, 4)
    truth = {
        "fps": FPS,
        "frames": scene.frames,
        "size": [WIDTH, HEIGHT],
        "exposure": round(metered, 4),
        "gain": round(_gain(cam, metered), 2),
        "camera": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in vars(cam).items()},
        "info": {k: v for k, v in scene.info.items() if k != "poster_face_box"},
        "faces": faces,
    }
    if tracks:
        truth["exposure_tracks"] = tracks
    info = SceneInfo(scene.expect, scene.identity, tuple(scene.tags), scene.photo)
    (out_dir / SCENE_FILE).write_text(json.dumps(info.to_json()) + "\n")
    (out_dir / TRUTH_FILE).write_text(json.dumps(truth) + "\n")
    return truth


def _gain(cam: Camera, exposure: float) -> float:
    """The sensor gain an exposure needs: the shutter first, up to ``cam.exposure_s``."""
    return max(1.0, exposure * (1 / 100) / cam.exposure_s) * cam.gain_extra


def _film(scene: Scene, radiance: np.ndarray, exposure: float, path: Path) -> dict:
    """The video at one exposure, written to ``path``; truth.json's per-frame face boxes.
    Every track of a scene draws the same noise in the same frames (one seed)."""
    rng = np.random.default_rng(scene.info["seed"])
    cam = scene.camera
    gain = _gain(cam, exposure)
    background = radiance * exposure  # what the people are composited over
    glare = None
    if cam.glare:
        bright = cv2.resize(np.minimum(background, 4.0), (80, 45), interpolation=cv2.INTER_AREA)
        glare = cv2.resize(cv2.GaussianBlur(bright, (0, 0), 12), (WIDTH, HEIGHT)) * cam.glare
        seen = np.minimum(background + glare, 1.0)
    else:
        seen = np.minimum(background, 1.0)
    shot, read = cam.shot * gain, (cam.read * gain) ** 2
    # The background is encoded once; its noise comes from a bank of pre-scaled fields
    # (the noise's size depends on the signal, so it is scaled in sRGB levels per pixel).
    sigma = np.sqrt(shot * seen + read)
    slope = (encode_float(seen + sigma) - encode_float(seen - sigma)) / 2
    fields = noise_fields(int(scene.info["seed"][0]))
    bank = [
        np.round(combined_noise(fields, c) * slope).astype(np.int16)
        for c in range(noise_combinations())
    ]
    background_levels = np.round(encode_float(seen)).astype(np.int16)
    del slope, sigma
    writer = MjpegWriter(path, cam.jpeg_quality)
    faces = {
        layer.role: {"identity": layer.identity, "boxes": []}
        for layer in scene.layers
        if layer.sprite.face_box is not None
    }
    if "poster_face_box" in scene.info:
        faces["poster"] = {
            "identity": scene.info.get("poster_identity"),
            "boxes": [scene.info["poster_face_box"]] * scene.frames,
        }
    previous = -1
    try:
        for i in range(scene.frames):
            t = i / FPS
            which = int(rng.integers(noise_combinations() - 1))
            which += which >= previous  # never the same noise twice in a row
            previous = which
            frame = cv2.add(background_levels, bank[which], dtype=cv2.CV_8U)
            roi, linear = _render_layers(scene, t, background, exposure)
            if roi is not None:
                x0, y0, x1, y1 = roi
                linear = cv2.GaussianBlur(linear, (0, 0), cam.psf)  # optics, over the people
                if glare is not None:
                    linear += glare[y0:y1, x0:x1]
                np.minimum(linear, 1.0, out=linear)
                noise = combined_noise(fields, which, (slice(y0, y1), slice(x0, x1)))
                linear += noise * np.sqrt(shot * linear + read)
                frame[y0:y1, x0:x1] = encode(linear)
                linear.fill(0)
            for layer in scene.layers:
                if layer.sprite.face_box is not None:
                    faces[layer.role]["boxes"].append(layer.face_box(t))
            writer.write(frame)
            frame.fill(0)
    finally:
        writer.close()
    return faces


__all__ = ["Scene", "render"]

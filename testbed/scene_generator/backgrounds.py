"""A departure gate seen from the camera, drawn procedurally.

Wall, ceiling lights, a floor in perspective, departure boards, signs, pillars, perhaps
a glass door; ``clutter`` pastes images that scikit-image ships (none with a human
face); ``backlight`` puts a bright glass facade behind the lane (a radiance gain of 8 to
18 over the wall). Everything is then defocused as a background 5-9 m away would be.
"""

from __future__ import annotations

import cv2
import numpy as np

from testbed.scene_generator.optics import FOCAL_PX, HEIGHT, WIDTH

CAMERA_HEIGHT_M = 1.60

# Images scikit-image ships that hold no human face ("astronaut" and "camera" do).
CLUTTER_IMAGES = (
    "coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field",
    "immunohistochemistry", "retina", "colorwheel", "logo", "brick", "gravel", "grass",
    "text", "page", "clock", "moon", "coins", "horse", "checkerboard", "cell",
)  # fmt: skip
POSTER_NONFACE = ("coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field", "logo")


def packaged_image(name: str, rng) -> np.ndarray:
    """A scikit-image sample image as 8-bit BGR (grey ones get a slight tint)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        tint = rng.uniform(0.75, 1.0, 3)
        image = (image[..., None] * tint[None, None, :]).astype(np.uint8)
    image = image[..., :3]
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)


def paste(
    dst: np.ndarray, image: np.ndarray, x: int, y: int, border: int = 0, colour=(235, 235, 235)
) -> None:
    """Paste ``image`` at (x, y) into ``dst``, clipped, with an optional frame."""
    if border:
        image = cv2.copyMakeBorder(
            image, border, border, border, border, cv2.BORDER_CONSTANT, value=colour
        )
    h, w = image.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, dst.shape[1]), min(y + h, dst.shape[0])
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = image[y0 - y : y1 - y, x0 - x : x1 - x]


def _ceiling_and_floor(img, rng, wall, y_ceil, y_floor, d_wall) -> None:
    cy = HEIGHT / 2
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None]
    img[:y_ceil] = np.array([225, 225, 222], np.float32) * (
        0.85 + 0.1 * rows[:y_ceil, :, None] / max(y_ceil, 1)
    )
    for z in np.arange(1.5, d_wall, rng.uniform(1.2, 2.0)):  # rows of ceiling lights
        yl = int(cy - FOCAL_PX * (CAMERA_HEIGHT_M + 1.4) / z)
        if 0 <= yl < y_ceil:
            half = int(FOCAL_PX * 0.6 / z)
            for xm in (-1.5, 0.0, 1.5):
                xl = int(WIDTH / 2 + FOCAL_PX * xm / z)
                cv2.rectangle(
                    img, (xl - half, yl - 3), (xl + half, yl + 3 + int(40 / z)), (250, 250, 250), -1
                )
    floor_palette = [[95, 100, 105], [120, 125, 130], [80, 90, 110], [140, 135, 125]]
    floor = np.array(rng.choice(floor_palette), np.float32)
    depth_rows = np.arange(HEIGHT - y_floor, dtype=np.float32)[:, None, None]
    img[y_floor:] = floor * (0.8 + 0.3 * depth_rows / max(HEIGHT - y_floor, 1))
    line = (floor * 0.85).tolist()
    for z in np.arange(1.0, d_wall, 0.6):  # floor tile lines
        yl = int(cy + FOCAL_PX * CAMERA_HEIGHT_M / z)
        if y_floor < yl < HEIGHT:
            cv2.line(img, (0, yl), (WIDTH, yl), line, 1, cv2.LINE_AA)
    near = int(cy + FOCAL_PX * CAMERA_HEIGHT_M / 0.8)
    for xm in np.arange(-6, 6.1, 0.6):
        far_x = int(WIDTH / 2 + FOCAL_PX * xm / d_wall)
        near_x = int(WIDTH / 2 + FOCAL_PX * xm / 0.8)
        cv2.line(img, (far_x, y_floor), (near_x, near), line, 1, cv2.LINE_AA)
    cv2.line(img, (0, y_floor), (WIDTH, y_floor), (wall * 0.55).tolist(), 2, cv2.LINE_AA)


def _fittings(img, rng, wall, y_ceil, y_floor) -> None:
    cy = HEIGHT / 2
    for _ in range(rng.integers(1, 4)):  # pillars
        x = int(rng.uniform(0, WIDTH))
        width = int(rng.uniform(40, 100))
        tone = wall * rng.uniform(0.75, 1.1)
        cv2.rectangle(img, (x, y_ceil), (x + width, y_floor), tone.tolist(), -1)
        cv2.line(img, (x, y_ceil), (x, y_floor), (tone * 0.7).tolist(), 2)
    for _ in range(rng.integers(1, 3)):  # departure boards
        bw, bh = int(rng.uniform(160, 300)), int(rng.uniform(60, 120))
        x = int(rng.uniform(0, WIDTH - bw))
        y = int(rng.uniform(y_ceil + 5, max(y_ceil + 6, cy - bh)))
        cv2.rectangle(img, (x, y), (x + bw, y + bh), (30, 28, 25), -1)
        for ry in range(y + 8, y + bh - 6, 11):
            for _ in range(rng.integers(2, 5)):
                rx = int(rng.uniform(x + 5, x + bw - 40))
                end = rx + int(rng.uniform(12, 45))
                colour = (60, 190, 235) if rng.random() < 0.6 else (230, 230, 230)
                cv2.rectangle(img, (rx, ry), (end, ry + 5), colour, -1)
    for _ in range(rng.integers(1, 4)):  # signs
        sw, sh = int(rng.uniform(60, 200)), int(rng.uniform(30, 60))
        x, y = int(rng.uniform(0, WIDTH - sw)), int(rng.uniform(y_ceil - 20, cy + 40))
        colour = rng.choice([[20, 200, 240], [150, 80, 20], [60, 140, 40], [40, 40, 40]])
        cv2.rectangle(img, (x, y), (x + sw, y + sh), [int(c) for c in colour], -1)
        glyph = (250, 250, 250) if colour[0] < 100 else (20, 20, 20)
        for gx in range(x + 8, x + sw - 10, int(rng.uniform(10, 16))):
            if rng.random() < 0.8:
                cv2.rectangle(img, (gx, y + sh // 3), (gx + 7, y + 2 * sh // 3), glyph, -1)
    if rng.random() < 0.5:  # a glass door
        dw = int(rng.uniform(120, 220))
        x = int(rng.uniform(0, WIDTH - dw))
        glass = img[y_ceil + 20 : y_floor, x : x + dw]
        glass[:] = glass * 0.6 + np.array([230, 220, 200], np.float32) * 0.4
        cv2.rectangle(img, (x, y_ceil + 20), (x + dw, y_floor), (70, 70, 70), 3)


def _clutter(img, rng, y_ceil, y_floor) -> list[str]:
    names = list(CLUTTER_IMAGES)
    rng.shuffle(names)
    count = int(rng.integers(7, 11))
    for name in names[:count]:
        picture = packaged_image(name, rng)
        target = rng.uniform(140, 420)
        s = target / max(picture.shape[:2])
        picture = cv2.resize(picture, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        x = int(rng.uniform(-60, WIDTH - picture.shape[1] + 60))
        y = int(rng.uniform(y_ceil - 40, y_floor - picture.shape[0] * 0.6))
        border = int(rng.choice([0, 4, 8]))
        grey = int(rng.uniform(20, 240))
        paste(img, picture.astype(np.float32), x, y, border=border, colour=(grey,) * 3)
    return names[:count]


def _facade(img, gain, rng, y_ceil, y_floor) -> float:
    """A bright glass facade behind the lane; its radiance gain."""
    x0 = int(rng.uniform(0.0, 0.12) * WIDTH)
    x1 = int(rng.uniform(0.88, 1.0) * WIDTH)
    y0 = max(0, y_ceil + int(rng.uniform(-40, 10)))
    sky = np.array([250, 240, 225], np.float32)
    window = img[y0:y_floor, x0:x1]
    window[:] = sky * np.linspace(0.95, 1.0, window.shape[0], dtype=np.float32)[:, None, None]
    horizon = int(y_floor - rng.uniform(20, 60))
    cv2.rectangle(img, (x0, horizon), (x1, y_floor), (185, 190, 190), -1)  # the apron
    for _ in range(rng.integers(0, 3)):  # buildings, a tail fin outside
        bx = int(rng.uniform(x0, x1 - 80))
        top = horizon - int(rng.uniform(20, 90))
        right = bx + int(rng.uniform(40, 200))
        cv2.rectangle(img, (bx, top), (right, horizon), (200, 205, 210), -1)
    gain[y0:y_floor, x0:x1] = rng.uniform(8.0, 18.0)
    step = int(rng.uniform(150, 260))
    for mx in range(x0, x1, step):  # mullions (not bright)
        cv2.rectangle(img, (mx, y0), (mx + 10, y_floor), (60, 60, 60), -1)
        gain[y0:y_floor, mx : mx + 10] = 1.0
    cv2.rectangle(img, (x0, y0), (x1, y0 + 12), (60, 60, 60), -1)
    gain[y0 : y0 + 12, x0:x1] = 1.0
    return float(gain.max())


def gate_background(rng, kind: str = "gate") -> tuple[np.ndarray, np.ndarray, dict]:
    """(8-bit sRGB BGR image, radiance gain H x W, facts) of a gate hall.

    ``kind``: ``gate``, ``clutter`` (packaged images on the walls) or ``backlight`` (a
    bright facade behind the lane).
    """
    d_wall = rng.uniform(5.0, 9.0)
    cy = HEIGHT / 2
    y_floor = int(cy + FOCAL_PX * CAMERA_HEIGHT_M / d_wall)
    y_ceil = int(cy - FOCAL_PX * (rng.uniform(2.8, 3.6) - CAMERA_HEIGHT_M) / d_wall)
    palette = np.array(
        [[200, 205, 210], [170, 190, 205], [205, 200, 185], [180, 180, 175], [150, 160, 170],
         [215, 215, 210]],
        float,
    )  # fmt: skip
    wall = palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.05) + rng.uniform(-10, 10, 3)
    img = np.empty((HEIGHT, WIDTH, 3), np.float32)
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None]
    cols = np.arange(WIDTH, dtype=np.float32)[None, :]
    light = 1.0 - 0.25 * np.abs(cols - rng.uniform(0.3, 0.7) * WIDTH) / WIDTH
    light = light - 0.1 * (rows - y_ceil) / HEIGHT
    img[:] = (wall[None, None, :] * light[..., None]).astype(np.float32)
    _ceiling_and_floor(img, rng, wall, y_ceil, y_floor, d_wall)
    _fittings(img, rng, wall, y_ceil, y_floor)
    gain = np.ones((HEIGHT, WIDTH), np.float32)
    info: dict = {"kind": kind, "wall_distance_m": round(d_wall, 2)}
    if kind == "clutter":
        info["images"] = _clutter(img, rng, y_ceil, y_floor)
    if kind == "backlight":
        info["window_gain"] = round(_facade(img, gain, rng, y_ceil, y_floor), 1)
    blotches = rng.standard_normal((HEIGHT // 4, WIDTH // 4)).astype(np.float32)
    blotches = cv2.GaussianBlur(blotches, (0, 0), 2)
    img += cv2.resize(blotches, (WIDTH, HEIGHT))[..., None] * 4
    sigma = rng.uniform(0.8, 1.3) if kind == "clutter" else rng.uniform(1.2, 2.4)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), sigma)  # defocus
    info["defocus_px"] = round(float(sigma), 2)
    return img, gain, info


__all__ = [
    "CAMERA_HEIGHT_M",
    "CLUTTER_IMAGES",
    "POSTER_NONFACE",
    "gate_background",
    "packaged_image",
    "paste",
]

"""Where each person is: a walk in metres, projected through a pin-hole camera.

A traveller walks along the lane towards the camera (3 m to 0.8 m: cruise, then brake to
a stop), with the bob of each step, a lateral drift and sway, a little roll, and fidgets
once standing; a crosser walks across the lane at a fixed depth. The camera hangs at
eye height; a face of 0.16 m is ``FOCAL_PX * 0.16 / distance`` px wide (43 px at 3 m,
160 px at 0.8 m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from testbed.scene_generator.optics import FOCAL_PX, HEIGHT, WIDTH
from testbed.scene_generator.people import Sprite

FACE_WIDTH_M = 0.16  # BlazeFace box width of an adult face


@dataclass
class Walk:
    """Walking towards the camera along the lane, braking to a stop, then standing."""

    d0: float  # start distance, m
    d1: float  # where the walk stops, m
    speed: float  # m/s
    decel: float  # m/s^2 when braking
    x0: float  # lateral position at the start, m
    x1: float  # and at the end
    eye: float  # eye height relative to the camera, m
    bob: float  # vertical bob of each step, m
    step_hz: float
    sway: float  # lateral sway while walking, m
    roll0: float  # head roll, degrees
    roll_amp: float
    fidget: float  # movement while standing, m
    phase: float
    t0: float = 0.0  # when the walk starts, s
    lateral_speed: float = 0.0  # crossing: walks across at this speed, at x0 at t0

    def _travel(self, t: float) -> tuple[float, float]:
        """(distance travelled, current speed) at time ``t`` (s)."""
        t = max(0.0, t - self.t0)
        total = self.d0 - self.d1
        v, a = self.speed, self.decel
        brake = min(total, v * v / (2 * a))
        cruise = (total - brake) / v
        if t < cruise:
            return v * t, v
        tau = t - cruise
        stop = v / a
        if tau < stop:
            return total - brake + v * tau - a * tau * tau / 2, v - a * tau
        return total, 0.0

    def duration(self) -> float:
        total = self.d0 - self.d1
        brake = min(total, self.speed**2 / (2 * self.decel))
        return self.t0 + (total - brake) / self.speed + self.speed / self.decel

    def state(self, t: float) -> tuple[float, float, float, float]:
        """(distance, lateral x, eye height y, roll in degrees) at time ``t``."""
        s, v = (0.0, self.speed) if self.lateral_speed else self._travel(t)
        total = max(self.d0 - self.d1, 1e-6)
        moving = v / self.speed if self.speed else 0.0
        w = 2 * math.pi * self.step_hz
        p = self.phase
        f = s / total
        drift = self.x0 + (self.x1 - self.x0) * (3 * f * f - 2 * f * f * f)
        if self.lateral_speed:
            drift = self.x0 + self.lateral_speed * (t - self.t0)
        still = self.fidget * (1 - moving)
        x = drift + self.sway * moving * math.sin(w / 2 * t + p) + still * math.sin(2.1 * t + 2 * p)
        y = self.eye + self.bob * moving * math.cos(w * t + p) + 0.6 * still * math.sin(1.3 * t + p)
        roll = (
            self.roll0
            + self.roll_amp * moving * math.sin(w / 2 * t + p)
            + 60.0 * still * math.sin(0.9 * t + p)
        )
        return self.d0 - s, x, y, roll


@dataclass
class Layer:
    """One person in a scene: their sprite, their walk and their light."""

    sprite: Sprite
    walk: Walk
    light: float  # radiance factor of this person's lighting
    role: str  # traveller, companion, behind1, crosser, passer_by
    identity: str | None = None

    def affine(self, t: float) -> tuple[np.ndarray, int, float]:
        """(2x3 matrix from the pyramid level to frame pixels, level, distance) at ``t``."""
        d, x, y, roll = self.walk.state(t)
        scale = FOCAL_PX * FACE_WIDTH_M / (max(d, 0.2) * self.sprite.face_w)
        level = 0
        while scale * 2 ** (level + 1) <= 1.0 and level + 1 < len(self.sprite.levels):
            level += 1
        s = scale * 2**level
        u = WIDTH / 2 + FOCAL_PX * x / d
        v = HEIGHT / 2 - FOCAL_PX * y / d
        theta = math.radians(roll)
        a, b = s * math.cos(theta), s * math.sin(theta)
        ax, ay = self.sprite.anchor / 2**level
        matrix = np.array([[a, -b, u - (a * ax - b * ay)], [b, a, v - (b * ax + a * ay)]])
        return matrix, level, d

    def face_box(self, t: float) -> list[float] | None:
        """The face's box in the frame at ``t`` (None: no face, or out of view)."""
        if self.sprite.face_box is None:
            return None
        matrix, level, _ = self.affine(t)
        x0, y0, x1, y1 = self.sprite.face_box / 2**level
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ matrix.T
        (bx0, by0), (bx1, by1) = corners.min(0), corners.max(0)
        if bx1 < 0 or by1 < 0 or bx0 > WIDTH or by0 > HEIGHT:
            return None
        return [round(float(v), 1) for v in (bx0, by0, bx1, by1)]


__all__ = ["FACE_WIDTH_M", "Layer", "Walk"]

"""What every recognizer offers the service: one face image in, one template out.

Everything else (fusion of several document photos, distances, thresholds, 1:N search)
is written once against :class:`RecognizerInfo`. Templates are comparable only within
one ``template_id`` (backend + model hash): the gallery stores it with each template
and never compares across ids.

Every backend makes unit-length templates compared by cosine; the service works with
the distance ``1 - cosine`` (lower is closer), so thresholds and the audit log keep one
meaning whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from matching_service.errors import NoFaceFound

Metric = Literal["cosine"]


@dataclass(frozen=True)
class RecognizerInfo:
    """A recognizer's identity and geometry, known without loading its model."""

    name: str  # what the CLI and config call it: "dlib", "mobilefacenet"
    template_id: str  # backend and model hash, stored with every template
    dimension: int
    metric: Metric

    def distances(self, probe: np.ndarray, templates: np.ndarray) -> np.ndarray:
        """Distance of ``probe`` (d,) to each row of ``templates`` (n, d)."""
        return 1.0 - np.atleast_2d(templates) @ probe

    def fuse(self, descriptors: list[np.ndarray]) -> np.ndarray:
        """One template from a traveller's K photos: their mean.

        Measured on faces-dev (see README): the mean of the unit descriptors beats
        best-of-K at FMR 1e-4 and in 1:N for both backends, and costs one comparison per
        traveller instead of K. The mean is re-normalised to unit length.
        """
        if not descriptors:
            raise ValueError("a template needs at least one descriptor")
        mean = np.mean(np.asarray(descriptors, np.float64), axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        return mean.astype(np.float32)


def require_colour_image(image: np.ndarray) -> None:
    """Refuse anything but H x W x 3 8-bit pixels, before a model or filter sees them."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise NoFaceFound("expected a colour (H x W x 3, 8-bit) image")


class Recognizer(Protocol):
    """A loaded backend. Not thread-safe unless it says so: one per thread or worker."""

    info: RecognizerInfo

    def encode(self, image_bgr: np.ndarray) -> np.ndarray:
        """Template of the largest face; raises ``NoFaceFound`` when there is none."""
        ...


__all__ = ["Metric", "Recognizer", "RecognizerInfo", "require_colour_image"]

"""What every recognizer offers the service: one face image in, one template out.

Everything else (fusion of several document photos, distances, thresholds, 1:N search)
is written once against :class:`RecognizerInfo`. Templates are comparable only within
one ``template_id`` (backend + model hash): the gallery stores it with each template
and never compares across ids.

Distances are "lower is closer" for every backend: Euclidean for dlib's descriptor,
``1 - cosine`` for embeddings scored by cosine, so thresholds and the audit log keep
one meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Metric = Literal["euclidean", "cosine"]


@dataclass(frozen=True)
class RecognizerInfo:
    """A recognizer's identity and geometry, known without loading its model."""

    name: str  # what the CLI and config call it: "dlib", "mobilefacenet"
    template_id: str  # backend and model hash, stored with every template
    dimension: int
    metric: Metric

    def distances(self, probe: np.ndarray, templates: np.ndarray) -> np.ndarray:
        """Distance of ``probe`` (d,) to each row of ``templates`` (n, d)."""
        templates = np.atleast_2d(templates)
        if self.metric == "cosine":
            return 1.0 - templates @ probe
        return np.linalg.norm(templates - probe[None, :], axis=1)

    def fuse(self, descriptors: list[np.ndarray]) -> np.ndarray:
        """One template from a traveller's K photos: their mean.

        Measured on faces-dev (see README): the mean beats best-of-K at FMR 1e-4 and in
        1:N for both backends, and costs one comparison per traveller instead of K. For
        cosine the unit embeddings are averaged and re-normalised; dlib's descriptors are
        averaged as they are, in the Euclidean space they are thresholded in.
        """
        if not descriptors:
            raise ValueError("a template needs at least one descriptor")
        mean = np.mean(np.asarray(descriptors, np.float64), axis=0)
        if self.metric == "cosine":
            mean /= max(float(np.linalg.norm(mean)), 1e-12)
        return mean.astype(np.float32)


class Recognizer(Protocol):
    """A loaded backend. Not thread-safe unless it says so: one per thread or worker."""

    info: RecognizerInfo

    def encode(self, image_bgr: np.ndarray) -> np.ndarray:
        """Template of the largest face; raises ``NoFaceFound`` when there is none."""
        ...


__all__ = ["Metric", "Recognizer", "RecognizerInfo"]

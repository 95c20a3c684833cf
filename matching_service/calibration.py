"""Calibration: encode a ``<identity>/*.jpg`` dataset and find the distance threshold at
a false match rate over all impostor pairs, with the genuine-pair FNMR there."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from matching_service.errors import BenchError, NoFaceFound
from matching_service.recognizer import FaceEncoder

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_dataset(dataset: Path) -> dict[str, list[Path]]:
    """identity -> its photos (sorted); identities with fewer than 2 photos are dropped."""
    if not dataset.is_dir():
        raise BenchError(f"dataset folder {dataset} does not exist")
    identities = {}
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if len(photos) >= 2:
            identities[folder.name] = photos
    if len(identities) < 5:
        raise BenchError(f"{dataset}: need at least 5 identities with 2+ photos each")
    return identities


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """Largest distance threshold whose false match rate on ``impostor`` is <= ``fmr``."""
    ordered = np.sort(impostor)
    allowed = int(np.floor(fmr * len(ordered)))  # impostor pairs that may fall at/below
    if allowed == 0:
        return float(np.nextafter(ordered[0], -np.inf))
    return float(np.nextafter(ordered[allowed], -np.inf))


def _encode_all(
    identities: dict[str, list[Path]], encoder: FaceEncoder
) -> tuple[list[str], np.ndarray, int]:
    labels, templates, failed = [], [], 0
    for identity, photos in identities.items():
        for photo in photos:
            image = cv2.imread(str(photo))
            try:
                templates.append(encoder.encode(image))
                labels.append(identity)
            except NoFaceFound:
                failed += 1
    return labels, np.array(templates, np.float32), failed


def calibrate_dataset(dataset: Path, fmr: float = 0.001) -> dict:
    """Threshold at ``fmr`` over every impostor pair of the dataset, and FNMR there."""
    labels, templates, failed = _encode_all(load_dataset(dataset), FaceEncoder())
    diff = templates[:, None, :] - templates[None, :, :]
    distances = np.sqrt((diff**2).sum(-1))
    label_array = np.array(labels)
    same = label_array[:, None] == label_array[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    genuine = distances[same & upper]
    impostor = distances[~same & upper]
    threshold = threshold_at_fmr(impostor, fmr)
    return {
        "fmr": fmr,
        "threshold": round(threshold, 4),
        "fnmr_1to1": round(float(np.mean(genuine > threshold)), 4),
        "fmr_measured": round(float(np.mean(impostor <= threshold)), 5),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "templates": len(labels),
        "failed_to_encode": failed,
    }


__all__ = ["PHOTO_SUFFIXES", "calibrate_dataset", "load_dataset", "threshold_at_fmr"]

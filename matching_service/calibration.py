"""Calibration on a ``<identity>/*.jpg`` dataset: thresholds for 1:1 and 1:N, and the
accuracy at them, for templates fused from K photos per traveller.

Protocol (the same for ``gate-matcher calibrate`` and the bench's accuracy figures):

* every photo is encoded once (photos with no usable face count as failures to
  acquire and are left out of the scores);
* for K photos per traveller, in fold f the template of each identity is the fusion of
  its photos f .. f+K-1 (cyclically) and its other photos are probes; genuine pairs are
  a template and its own probes, impostor pairs a template and everyone else's probes
  (also outside their template photos); the folds' pairs are pooled;
* 1:N: in rotation r, the identities with index % 5 == r are left out of the gallery
  (strangers, as the simulation leaves out one in five) and every probe searches the
  rest; rank-1 over mated searches, FPIR over the strangers' searches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gate_contract.progress import SILENT, Progress
from matching_service.errors import BenchError, NoFaceFound
from matching_service.recognizers import Recognizer, RecognizerInfo
from matching_service.thresholds import (
    TARGET_FMR,
    TARGET_FPIR,
    OperatingPoints,
    threshold_at_fmr,
)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
ROTATIONS = 5


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


@dataclass
class EncodedDataset:
    """Every photo's template (None: failure to acquire), grouped by identity."""

    info: RecognizerInfo
    identities: list[str]
    templates: list[list[np.ndarray | None]]
    ms_per_photo: float

    @property
    def photos(self) -> int:
        return sum(len(t) for t in self.templates)

    @property
    def failed(self) -> int:
        return sum(t is None for ts in self.templates for t in ts)


def encode_dataset(
    identities: dict[str, list[Path]], recognizer: Recognizer, progress: Progress = SILENT
) -> EncodedDataset:
    """Encode every photo once; the decoded images are zeroized after use."""
    templates, seconds = [], []
    total = sum(len(photos) for photos in identities.values())
    with progress.bar("encoding", total=total, unit="photo") as bar:
        for photos in identities.values():
            row = []
            for photo in photos:
                image = cv2.imread(str(photo))
                if image is None:
                    raise BenchError(f"cannot read {photo}")
                started = time.perf_counter()
                try:
                    row.append(recognizer.encode(image))
                except NoFaceFound:
                    row.append(None)
                finally:
                    seconds.append(time.perf_counter() - started)
                    image.fill(0)
                bar.update()
            templates.append(row)
    return EncodedDataset(
        recognizer.info, list(identities), templates, 1000 * float(np.median(seconds))
    )


@dataclass
class Scores:
    """Pooled distances of one protocol run (K photos per template)."""

    photos: int
    genuine: np.ndarray
    impostor: np.ndarray
    mated_best: np.ndarray  # 1:N: distance to the nearest gallery template, mated searches
    mated_right: np.ndarray  # ... and whether that nearest template was the right one
    nonmated_best: np.ndarray  # 1:N: nearest distance for strangers' searches
    gallery_size: int


def fold_scores(encoded: EncodedDataset, photos: int) -> Scores:
    """Pool genuine/impostor pairs and 1:N searches over folds and rotations."""
    info = encoded.info
    eligible = [i for i, ts in enumerate(encoded.templates) if len(ts) > photos]
    if len(eligible) < ROTATIONS:
        raise BenchError(f"need at least {ROTATIONS} identities with more than {photos} photos")
    genuine, impostor, mated_best, mated_right, nonmated = [], [], [], [], []
    gallery_sizes = []
    folds = max(len(encoded.templates[i]) for i in eligible)
    for fold in range(folds):
        template_ids, fused, probes, probe_ids = [], [], [], []
        for i in eligible:
            row = encoded.templates[i]
            chosen = {(fold + j) % len(row) for j in range(photos)}
            usable = [row[j] for j in chosen if row[j] is not None]
            if usable:
                template_ids.append(i)
                fused.append(info.fuse(usable))
            for j, t in enumerate(row):
                if j not in chosen and t is not None:
                    probes.append(t)
                    probe_ids.append(i)
        if not fused or not probes:
            continue
        matrix, probe_matrix = np.array(fused), np.array(probes)
        distances = np.stack([info.distances(p, matrix) for p in probe_matrix], axis=1)
        owners, probe_owner = np.array(template_ids), np.array(probe_ids)
        same = owners[:, None] == probe_owner[None, :]
        genuine.append(distances[same])
        impostor.append(distances[~same])
        for rotation in range(ROTATIONS):
            in_gallery = np.array([e % ROTATIONS != rotation for e in range(len(eligible))])
            position = {i: n for n, i in enumerate(eligible)}
            rows = np.array([in_gallery[position[i]] for i in template_ids])
            gallery = distances[rows]
            gallery_owners = owners[rows]
            gallery_sizes.append(int(rows.sum()))
            nearest = gallery.argmin(0)
            best = gallery.min(0)
            stranger = np.array([not in_gallery[position[i]] for i in probe_ids])
            mated = np.isin(probe_owner, gallery_owners) & ~stranger
            mated_best.append(best[mated])
            mated_right.append(gallery_owners[nearest[mated]] == probe_owner[mated])
            nonmated.append(best[stranger])
    cat = np.concatenate
    return Scores(
        photos,
        cat(genuine),
        cat(impostor),
        cat(mated_best),
        cat(mated_right),
        cat(nonmated),
        int(np.median(gallery_sizes)),
    )


def operating_points(scores: Scores, info: RecognizerInfo, source: str) -> OperatingPoints:
    return OperatingPoints.fit(info.template_id, scores.photos, scores.impostor, source)


def accuracy(scores: Scores, points: OperatingPoints) -> dict:
    """FNMR at FMR 1e-3 and 1e-4 (counted), rank-1, and 1:N at the shipped 1:N threshold."""
    out = {"photos_per_traveller": scores.photos}
    for fmr, key in ((1e-3, "fnmr_at_fmr_1e-3"), (1e-4, "fnmr_at_fmr_1e-4")):
        if np.floor(fmr * scores.impostor.size) >= 1:
            t = threshold_at_fmr(scores.impostor, fmr)
            out[key] = round(float(np.mean(scores.genuine > t)), 4)
        else:
            out[key] = None
    one = points.one_to_one()
    many = points.one_to_many(scores.gallery_size)
    out.update(
        {
            "threshold_1to1": round(one, 4),
            "fmr_at_threshold_1to1": round(float(np.mean(scores.impostor <= one)), 5),
            "fnmr_at_threshold_1to1": round(float(np.mean(scores.genuine > one)), 4),
            "rank1": round(float(np.mean(scores.mated_right)), 4),
            "gallery_size": scores.gallery_size,
            "threshold_1toN": round(many, 4),
            "fpir_at_threshold_1toN": round(float(np.mean(scores.nonmated_best <= many)), 4),
            "fnir_at_threshold_1toN": round(
                float(np.mean(~(scores.mated_right & (scores.mated_best <= many)))), 4
            ),
            "genuine_pairs": int(scores.genuine.size),
            "impostor_pairs": int(scores.impostor.size),
            "mated_searches": int(scores.mated_best.size),
            "nonmated_searches": int(scores.nonmated_best.size),
        }
    )
    return out


def calibrate_dataset(
    dataset: Path,
    recognizer: Recognizer,
    photos: tuple[int, ...] = (1, 2, 3),
    progress: Progress = SILENT,
) -> tuple[list[OperatingPoints], dict]:
    """Operating points for each K in ``photos`` and the report ``calibrate`` prints."""
    identities = load_dataset(dataset)
    encoded = encode_dataset(identities, recognizer, progress)
    source = f"{dataset.name}: {len(identities)} identities, {encoded.photos} photos"
    points, rows = [], []
    for k in photos:
        scores = fold_scores(encoded, k)
        p = operating_points(scores, encoded.info, source)
        points.append(p)
        row = accuracy(scores, p)
        row["threshold_1toN_by_gallery"] = {
            n: round(p.one_to_many(n), 4) for n in (50, 100, 200, 400)
        }
        rows.append(row)
    report = {
        "recognizer": encoded.info.name,
        "template_id": encoded.info.template_id,
        "metric": encoded.info.metric,
        "target_fmr": TARGET_FMR,
        "target_fpir": TARGET_FPIR,
        "photos": encoded.photos,
        "failed_to_acquire": encoded.failed,
        "ms_per_photo": round(encoded.ms_per_photo, 1),
        "by_photos_per_traveller": rows,
    }
    return points, report


__all__ = [
    "PHOTO_SUFFIXES",
    "ROTATIONS",
    "EncodedDataset",
    "Scores",
    "accuracy",
    "calibrate_dataset",
    "encode_dataset",
    "fold_scores",
    "load_dataset",
    "operating_points",
]

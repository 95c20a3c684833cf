"""Pinned face-detection models: what set-up fetches and what the detector may load.

The BlazeFace TFLite files come from the npm package ``@mediapipe/face_detection``
and are pinned by SHA-256. Set-up converts them to ONNX (the conversion is not
byte-for-byte reproducible), and records the converted file's hash next to the
source hash in ``manifest.json``; the detector refuses any file that does not match.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ModelError
from appliance.paths import models_dir

NPM_PACKAGE = "@mediapipe/face_detection@0.4.1657300184"
NPM_TARBALL_SHA256 = "a118cde74923dc4435257fbfbb613464a0f58d115dff6314d4ff96c8aebf6419"


@dataclass(frozen=True)
class ModelPin:
    """One BlazeFace variant: its source file, pinned hash and input size."""

    name: str
    tflite_file: str
    tflite_sha256: str
    input_size: int


MODELS = {
    "short": ModelPin(
        "short",
        "face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        128,
    ),
    "full": ModelPin(
        "full",
        "face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        192,
    ),
}

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Runtime(enum.StrEnum):
    """What runs the detection model (``[vision] runtime``)."""

    ONNXRUNTIME = "onnxruntime"
    LITERT = "litert"
    MEDIAPIPE = "mediapipe"


RUNTIMES = tuple(Runtime)
# The gate's detector runtime unless ``[vision] runtime`` says otherwise: LiteRT ran the
# same model to the same faces, 15-25 % faster than onnxruntime on the scene bench.
DEFAULT_RUNTIME = Runtime.LITERT


def model_path(
    variant: str, runtime: str = Runtime.ONNXRUNTIME, directory: Path | None = None
) -> Path:
    """Where set-up puts the prepared model of ``variant`` for ``runtime`` (LiteRT runs
    the pinned file itself)."""
    suffix = {Runtime.ONNXRUNTIME: ".onnx", Runtime.LITERT: ".tflite"}.get(runtime, "_tasks.tflite")
    return (directory or models_dir()) / f"blazeface_{variant}{suffix}"


def onnx_path(variant: str, directory: Path | None = None) -> Path:
    return model_path(variant, Runtime.ONNXRUNTIME, directory)


def write_manifest(directory: Path) -> None:
    """Record the hashes of the models set-up just prepared, per variant and runtime."""
    entries: dict[str, dict] = {}
    for variant, pin in MODELS.items():
        for runtime in RUNTIMES:
            path = model_path(variant, runtime, directory)
            if not path.is_file():
                continue
            entries[f"{variant}/{runtime}"] = {
                "file": path.name,
                "sha256": sha256_file(path),
                "source": pin.tflite_file,
                "source_sha256": pin.tflite_sha256,
                "source_package": NPM_PACKAGE,
            }
    (directory / MANIFEST).write_text(json.dumps(entries, indent=2) + "\n")


@dataclass(frozen=True)
class VerifiedModel:
    """A model file's bytes, read once and checked: what a runtime loads is what was
    hashed, so a file swapped after the check cannot be loaded instead."""

    path: Path
    pin: ModelPin
    content: bytes = field(repr=False)


def verified_model(
    variant: str, directory: Path | None = None, runtime: str = Runtime.ONNXRUNTIME
) -> VerifiedModel:
    """The prepared model file, read and checked against the manifest (and, for LiteRT,
    which runs the upstream file itself, against the pin)."""
    if variant not in MODELS:
        raise ModelError(f"unknown detector model {variant!r}; choose one of {sorted(MODELS)}")
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown detector runtime {runtime!r}; choose one of {RUNTIMES}")
    directory = directory or models_dir()
    manifest_path = directory / MANIFEST
    path = model_path(variant, runtime, directory)
    if not manifest_path.is_file() or not path.is_file():
        raise ModelError(
            f"face detection model {variant!r} for {runtime} not found in {directory}: run "
            "`make setup` (scripts/acquire_assets.py) to fetch and prepare it"
        )
    try:
        entry = json.loads(manifest_path.read_text())[f"{variant}/{runtime}"]
        expected = entry["sha256"]
        source = entry["source_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model manifest {manifest_path} is unreadable: {exc!r}") from exc
    pin = MODELS[variant]
    if source != pin.tflite_sha256:
        raise ModelError(f"model {path.name} was prepared from an unpinned source ({source})")
    content = path.read_bytes()
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise ModelError(
            f"model {path} is corrupt or was replaced: SHA-256 {actual}, expected {expected}"
        )
    if runtime == Runtime.LITERT and actual != pin.tflite_sha256:
        raise ModelError(f"model {path.name} is not the pinned {pin.tflite_file}")
    return VerifiedModel(path, pin, content)


__all__ = [
    "DEFAULT_RUNTIME",
    "MANIFEST",
    "MODELS",
    "NPM_PACKAGE",
    "NPM_TARBALL_SHA256",
    "RUNTIMES",
    "ModelPin",
    "Runtime",
    "VerifiedModel",
    "model_path",
    "onnx_path",
    "sha256_file",
    "verified_model",
    "write_manifest",
]

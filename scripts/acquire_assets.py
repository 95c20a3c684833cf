"""Fetch, verify and prepare what the appliance and the demo need, from package registries.

- BlazeFace detection models: npm ``@mediapipe/face_detection`` (Apache-2.0), pinned by
  SHA-256, converted to ONNX for onnxruntime.
- Demo faces: the official portraits in the ``face_recognition`` 1.3.0 source
  distribution on PyPI (MIT; U.S. government works) and scikit-image's astronaut
  (NASA, public domain). They play document photos and live captures in the demo.
- MicroPython's webassembly port: npm ``@micropython/micropython-webassembly-pyscript``
  (MIT), pinned by SHA-256; the simulator runs the gate firmware on it under ``node``.
- Test tool: axe-core (npm, MPL-2.0, unmodified with its licence), the accessibility
  engine the browser tests run on the screens (WCAG colour contrast and more).

Idempotent: a second run checks hashes and does nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from appliance.paths import demo_assets_dir, models_dir, tools_dir
from appliance.vision import models as model_store
from firmware_bridge.simulator import micropython_runtime as mpy_runtime

FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
FACE_RECOGNITION_SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
DEMO_IMAGES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
AXE_PACKAGE = "axe-core@4.14.1"
AXE_TARBALL_SHA256 = "e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745"
AXE_FILES = {
    "axe.min.js": "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c",
    "LICENSE": "af175b9d96ee93c21a036152e1b905b0b95304d4ae8c2c921c7609100ba8df7e",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(label: str, data: bytes, expected: str) -> None:
    actual = _sha256(data)
    if actual != expected:
        sys.exit(f"{label}: SHA-256 {actual} does not match the pinned {expected}; refusing it")


def _prepared(target: Path) -> bool:
    try:
        for variant in model_store.MODELS:
            for runtime in model_store.RUNTIMES:
                model_store.verified_model(variant, target, runtime)
    except model_store.ModelError:
        return False
    return True


def acquire_models(target: Path) -> None:
    if _prepared(target):
        print(f"models: already prepared in {target}")
        return
    import tflite2onnx  # set-up only dependencies
    from quiet_converter import quiet_converter
    from tflite_metadata import with_tasks_metadata

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                ["npm", "pack", "--silent", model_store.NPM_PACKAGE],
                cwd=tmp,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise SystemExit(
                "set-up needs npm to fetch the face-detection model"
                f" ({model_store.NPM_PACKAGE}): apt-get install npm, then make setup again"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"npm pack {model_store.NPM_PACKAGE} failed ({exc})") from None
        (tarball,) = Path(tmp).glob("*.tgz")
        _check(tarball.name, tarball.read_bytes(), model_store.NPM_TARBALL_SHA256)
        with tarfile.open(tarball) as archive:
            for variant, pin in model_store.MODELS.items():
                member = archive.extractfile(f"package/{pin.tflite_file}")
                data = member.read() if member else b""
                _check(pin.tflite_file, data, pin.tflite_sha256)
                source = Path(tmp) / pin.tflite_file
                source.write_bytes(data)
                with quiet_converter():
                    tflite2onnx.convert(str(source), str(model_store.onnx_path(variant, target)))
                model_store.model_path(variant, "litert", target).write_bytes(data)
                tasks = model_store.model_path(variant, "mediapipe", target)
                tasks.write_bytes(with_tasks_metadata(data))
    model_store.write_manifest(target)
    print(
        f"models: BlazeFace short and full range verified, prepared for onnxruntime, LiteRT "
        f"and MediaPipe Tasks in {target}"
    )


def acquire_demo_faces(target: Path) -> None:
    wanted = [*DEMO_IMAGES, "astronaut.png"]
    if all((target / name).is_file() for name in wanted):
        print(f"demo faces: already in {target}")
        return
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", "--dest", tmp, FACE_RECOGNITION_SDIST),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (sdist,) = Path(tmp).glob("face_recognition-*.tar.gz")
        _check(sdist.name, sdist.read_bytes(), FACE_RECOGNITION_SDIST_SHA256)
        with tarfile.open(sdist) as archive:
            for name in DEMO_IMAGES:
                member = archive.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}")
                if member is None:
                    sys.exit(f"{sdist.name} has no {name}")
                with (target / name).open("wb") as out:
                    shutil.copyfileobj(io.BytesIO(member.read()), out)
    import cv2
    import skimage.data  # set-up only dependency

    cv2.imwrite(
        str(target / "astronaut.png"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    )
    print(f"demo faces: {', '.join(wanted)} in {target}")


def _npm_files(package: str, tarball_sha256: str, pinned: dict[str, str]) -> dict[str, bytes]:
    """The named files of an npm package, each checked against its pinned SHA-256."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", "--silent", package], cwd=tmp, check=True, stdout=subprocess.DEVNULL
        )
        (tarball,) = Path(tmp).glob("*.tgz")
        _check(tarball.name, tarball.read_bytes(), tarball_sha256)
        files = {}
        with tarfile.open(tarball) as archive:
            for name, expected in pinned.items():
                member = archive.extractfile(f"package/{name}")
                data = member.read() if member else b""
                _check(f"{package} {name}", data, expected)
                files[name] = data
    return files


def _write_files(target: Path, files: dict[str, bytes]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)


def _has_pinned(target: Path, pinned: dict[str, str]) -> bool:
    return all(
        (target / name).is_file() and _sha256((target / name).read_bytes()) == expected
        for name, expected in pinned.items()
    )


def acquire_micropython(target: Path) -> None:
    try:
        mpy_runtime.verified_runtime(target)
    except mpy_runtime.SimulatorError:
        pass
    else:
        print(f"micropython: already in {target}")
        return
    files = _npm_files(
        mpy_runtime.NPM_PACKAGE, mpy_runtime.NPM_TARBALL_SHA256, mpy_runtime.RUNTIME_FILES
    )
    _write_files(target, files)
    mpy_runtime.verified_runtime(target)
    print(f"micropython: {mpy_runtime.NPM_PACKAGE} verified, in {target}")


def acquire_axe(target: Path) -> None:
    if _has_pinned(target, AXE_FILES):
        print(f"axe-core: already in {target}")
        return
    _write_files(target, _npm_files(AXE_PACKAGE, AXE_TARBALL_SHA256, AXE_FILES))
    print(f"axe-core: {AXE_PACKAGE} verified, in {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=models_dir())
    parser.add_argument("--demo-dir", type=Path, default=demo_assets_dir())
    parser.add_argument("--micropython-dir", type=Path, default=mpy_runtime.runtime_dir())
    args = parser.parse_args()
    acquire_models(args.models_dir)
    acquire_demo_faces(args.demo_dir)
    acquire_micropython(args.micropython_dir)
    acquire_axe(tools_dir() / "axe-core")
    return 0


if __name__ == "__main__":
    sys.exit(main())

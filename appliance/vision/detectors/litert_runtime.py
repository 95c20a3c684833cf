"""BlazeFace through LiteRT (TensorFlow Lite's runtime, with its XNNPACK CPU kernels).

It runs the pinned TFLite file itself, the format the model was made for, in NHWC as it
comes; XNNPACK is the CPU path MediaPipe runs BlazeFace with on phones and on the Pi.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from appliance.errors import ModelError
from appliance.vision.detectors.blazeface import BlazeFace
from appliance.vision.models import Runtime, VerifiedModel

# Printed by LiteRT's C++ on stderr at a process's first model load, with no switch to
# turn it off.
_DELEGATE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def _drain(read_end: int) -> bytes:
    """What the pipe holds now, without waiting for an end of file (a process started
    meanwhile would keep the pipe open for as long as it runs)."""
    os.set_blocking(read_end, False)
    held = []
    try:
        while chunk := os.read(read_end, 1 << 16):
            held.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.close(read_end)
    return b"".join(held)


@contextlib.contextmanager
def _without_delegate_notice() -> Iterator[None]:
    """Hold back what is written to stderr (fd 2) meanwhile, and pass it all on but the
    delegate notice, which would otherwise land in every CLI run and in the journal."""
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        passed_on = _drain(read_end).replace(_DELEGATE_NOTICE, b"", 1)
        if passed_on:
            os.write(2, passed_on)


def _interpreter(model: VerifiedModel, threads: int) -> Interpreter:
    try:
        with _without_delegate_notice():
            interpreter = Interpreter(model_content=model.content, num_threads=threads)
            interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"LiteRT could not load {model.path.name}: {exc}") from exc
    return interpreter


class LiteRTFaceDetector(BlazeFace):
    """BlazeFace on LiteRT, the TFLite file checked against its pinned SHA-256."""

    runtime = Runtime.LITERT

    def _load(self, model: VerifiedModel, threads: int) -> None:
        self._interpreter = _interpreter(model, threads)
        (given,) = self._interpreter.get_input_details()
        if tuple(given["shape"]) != (1, self.size, self.size, 3):
            name = model.path.name
            raise ModelError(f"{name} takes {tuple(given['shape'])}, not one RGB image")
        self._input = given["index"]
        outputs = {int(o["shape"][-1]): o["index"] for o in self._interpreter.get_output_details()}
        self._regressors, self._scores = outputs[16], outputs[1]
        self._rgb = np.zeros((self.size, self.size, 3), np.uint8)

    def _input_tensor(self) -> np.ndarray:
        """The interpreter's own input buffer (a view: dropped before every invoke)."""
        return self._interpreter.tensor(self._input)()

    def _run(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=self._rgb)
            tensor = self._input_tensor()
            np.multiply(self._rgb, np.float32(1 / 127.5), out=tensor[0])
            tensor -= np.float32(1.0)  # RGB in [-1, 1], written in place
            del tensor
            self._interpreter.invoke()
            regressors = self._interpreter.get_tensor(self._regressors)
            logits = self._interpreter.get_tensor(self._scores)
        finally:
            self._rgb.fill(0)
            self._input_tensor().fill(0)
        return regressors[0], logits[0, :, 0]


__all__ = ["LiteRTFaceDetector"]

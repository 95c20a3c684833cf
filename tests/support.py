"""What several test modules share besides fixtures: paths and small helpers."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomlkit

from gate_contract.files import write_private
from gate_contract.keys import PkiLayout
from matching_service.enrollment import EnrollmentTokens
from matching_service.errors import RecognizerUnavailable
from matching_service.recognizers import Recognizer, open_recognizer

REPO = Path(__file__).resolve().parents[1]
# faces-dev beside the checkout (this workplace), or wherever GATE_TEST_DATASET names
DATASET = Path(
    os.environ.get("GATE_TEST_DATASET", REPO.parent / "shared" / "datasets" / "faces-dev")
)
CANVAS_W, CANVAS_H = 1280, 720


# A line of gRPC's C core (absl log format: "E1201 16:16:46.410670 27016 add_port.cc:83]
# ..."), or any mention of its sources: what must never reach the person at a terminal.
GRPC_CORE_LINE = re.compile(r"^[EWIF]\d{4} \d\d:\d\d:\d\d|\.cc:\d+\]|chttp2", re.MULTILINE)


def console_script(name: str) -> Path:
    """The installed console script ``name`` (``gatectl``, ``gate-matcher``) of this venv."""
    return Path(sys.executable).with_name(name)


def without_grpc_logging(**extra: str) -> dict[str, str]:
    """This environment without the variables that set gRPC's own logging, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    return env | extra


def require_recognizer(name: str) -> Recognizer:
    """Recognizer ``name``, or skip with the reason when set-up could not acquire it.

    Under CI (``CI=true``) a missing recognizer fails instead: CI must acquire it.
    """
    try:
        return open_recognizer(name)
    except RecognizerUnavailable as exc:
        message = f"recognizer {name} is not set up ({exc}); run `make setup`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def record_outputs(monkeypatch, owner, *names: str, into: list | None = None) -> list:
    """Wrap ``owner``'s functions ``names`` so every value they return is kept (in
    ``into``, or a new list): a test can then check that each buffer made was zeroized."""
    made: list = [] if into is None else into
    for name in names:
        function = getattr(owner, name)

        def wrapper(*args, _function=function, **kwargs):
            out = _function(*args, **kwargs)
            made.append(out)
            return out

        monkeypatch.setattr(owner, name, wrapper)
    return made


def copy_layout(source: PkiLayout, target: Path) -> PkiLayout:
    """A copy of a PKI folder, to swap single files in tests."""
    shutil.copytree(source.root, target)
    return PkiLayout(target)


def unit_config(
    folder: Path,
    *,
    matcher_target: str,
    pki_dir: Path | str,
    serial_port: str,
    relay_key: bytes,
    camera_source: str,
    **sections: dict[str, object],
) -> Path:
    """Write a gate unit's ``relay.key`` and ``gate.toml`` in ``folder``; the config's path.

    The file holds what a running unit needs (device, camera, matcher with a 10 s deadline,
    serial, flight BA 0283 at LAX gate B42, ledger under ``state/``); each of ``sections``
    (``vision={"steady_frames": 1}``, ``screens={"port": 0}``) sets keys of that table,
    adding the table if new; a key given as None is left out. Paths are written as text.
    """
    write_private(folder / "relay.key", relay_key.hex().encode())
    tables: dict[str, dict[str, object]] = {
        "device": {"id": "gate-dev-0001"},
        "camera": {"source": camera_source},
        "matcher": {"target": matcher_target, "pki_dir": pki_dir, "deadline_s": 10.0},
        "serial": {"port": serial_port, "relay_key_file": "relay.key"},
        "flight": {
            "carrier": "BA",
            "number": "0283",
            "date": "2026-11-25",
            "airport": "LAX",
            "gate": "B42",
        },
        "ledger": {"path": "state/purge-ledger.jsonl"},
    }
    for name, keys in sections.items():
        table = tables.setdefault(name, {})
        for key, value in keys.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    for table in tables.values():
        table.update({k: str(v) for k, v in table.items() if isinstance(v, Path)})
    path = folder / "gate.toml"
    path.write_text(tomlkit.dumps(tables))
    return path


@dataclass
class EnrollmentKit:
    """What a technician's provisioning kit holds: a token store, both service addresses
    and the CA to pin."""

    tokens: EnrollmentTokens
    enroll_target: str
    matcher_target: str
    ca_file: Path


def run_module(
    module: str, *args: str, timeout: float = 120, **options
) -> subprocess.CompletedProcess:
    """``python -m module args`` from the repository, no stdin, output captured as text."""
    if "input" not in options:
        options.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=options.pop("cwd", REPO),
        **options,
    )


def gatectl(*args: str, **options) -> subprocess.CompletedProcess:
    """The appliance's CLI in its own process."""
    return run_module("appliance", *args, **options)


def gate_matcher(*args: str, **options) -> subprocess.CompletedProcess:
    """The matching service's CLI in its own process."""
    return run_module("matching_service.cli", *args, **options)


class StillCamera:
    """A camera that shows ``frame`` ``count`` times, a fresh copy each time (the selector
    zeroizes every frame it does not send), then ends."""

    def __init__(self, frame: np.ndarray, count: int = 20) -> None:
        self.frame, self.left = frame, count

    def read(self) -> np.ndarray | None:
        if not self.left:
            return None
        self.left -= 1
        return self.frame.copy()

    def close(self) -> None:
        pass


class WalkingUp:
    """A traveller walking up to the camera: the photo grows from ``start`` to ``end``
    times its size over ``frames`` frames, then stands there, filmed through a lens (a
    slight blur); ``noise``: a sensor's noise (grey levels, new in every frame); ``light``:
    how much of the photo's light reaches the camera (a dim hall, backlight). Keeps every
    frame given."""

    def __init__(
        self,
        photo: Path,
        frames: int = 90,
        start: float = 0.2,
        end: float = 0.5,
        noise: float = 0.0,
        light: float = 1.0,
    ) -> None:
        image = cv2.imread(str(photo))
        self.image = image if light == 1.0 else cv2.convertScaleAbs(image, alpha=light)
        self.scales = np.concatenate([np.linspace(start, end, frames), np.full(30, end)])
        self.noise = noise
        self.rng = np.random.default_rng(11)
        self.given: list[np.ndarray] = []

    def read(self) -> np.ndarray | None:
        if len(self.given) >= len(self.scales):
            return None
        scale = float(self.scales[len(self.given)])
        face = cv2.resize(self.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = cv2.GaussianBlur(face, (0, 0), 1.0)  # the camera's lens
        frame = np.full((CANVAS_H, CANVAS_W, 3), 118, np.uint8)
        h, w = min(face.shape[0], CANVAS_H), min(face.shape[1], CANVAS_W)
        y, x = (CANVAS_H - h) // 2, (CANVAS_W - w) // 2
        frame[y : y + h, x : x + w] = face[:h, :w]
        if self.noise:
            noisy = frame + self.rng.normal(0.0, self.noise, frame.shape)
            frame[:] = np.clip(noisy, 0, 255).astype(np.uint8)
        self.given.append(frame)
        return frame

    def close(self) -> None:
        pass


@dataclass
class TerminalRun:
    """A command run with its stderr on a terminal: what stdout got, what the terminal
    showed."""

    returncode: int
    stdout: str
    terminal: str


def run_with_stderr_on_a_terminal(args: list[str], timeout: float = 120) -> TerminalRun:
    """Run ``args`` (a real process) as a person at a 100-column terminal would, with its
    output piped: stderr on a pseudo-terminal, stdout on a pipe, no stdin."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    shown = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has gone
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=REPO
        )
    finally:
        os.close(slave)
    try:
        stdout, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
        os.close(master)
    return TerminalRun(process.returncode, stdout.decode(), shown.decode(errors="replace"))


def write_two_traveller_manifest(path: Path, demo_photos: Path) -> Path:
    """A gallery manifest of the two demo travellers: P1 (obama.jpg), P2 (biden.jpg)."""
    entries = [
        {"traveller_id": "P1", "category": "us_citizen", "photo": str(demo_photos / "obama.jpg")},
        {"traveller_id": "P2", "category": "in_scope", "photo": str(demo_photos / "biden.jpg")},
    ]
    path.write_text(json.dumps(entries))
    return path

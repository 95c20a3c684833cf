"""The real MicroPython interpreter for the simulator: MicroPython's webassembly port.

npm ``@micropython/micropython-webassembly-pyscript`` is MicroPython compiled to
webassembly; under ``node`` it runs the same bytecode compiler, VM and standard library
subset as a board, so the firmware core meets MicroPython's ``struct``, ``hashlib``,
integer and bytes semantics rather than CPython's. Set-up fetches the tarball with ``npm
pack`` and checks it against :data:`NPM_TARBALL_SHA256`; the two files unpacked from it
are checked against :data:`RUNTIME_FILES` each time an interpreter starts.

Also here: which firmware files the interpreter gets (:func:`firmware_files`), so the
simulator, the bench and the emulated board all load the firmware exactly as it is in
this checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from firmware_bridge.mcu.manifest import FIRMWARE_MODULES, PACKAGE_ROOT
from firmware_bridge.protocol import BridgeError
from gate_contract.paths import data_dir

NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript@1.27.0"
NPM_TARBALL_SHA256 = "303919763c8ebfe5923b9da66226c20dce44ad72b604b225fb39338ea15367af"
# file in the tarball's package/ folder -> SHA-256
RUNTIME_FILES = {
    "micropython.mjs": "c2be87e7ba24e3b47d133022b009a66bff07f4720aa23d816d216ef8cc47014c",
    "micropython.wasm": "06338c955b03c5700aa0069015d3e392d76836ef8e2ce25bedbe59b88ccd373c",
}
MICROPYTHON_VERSION = "1.27.0"


class SimulatorError(BridgeError):
    """The simulated MCU cannot start or stopped answering (runtime missing or altered,
    ``node`` missing, the interpreter died)."""


def runtime_dir() -> Path:
    """Where set-up unpacks the webassembly interpreter."""
    return data_dir() / "micropython"


def node_executable() -> str:
    """``node`` (or ``$GATE_NODE``), which runs the webassembly interpreter."""
    node = os.environ.get("GATE_NODE") or shutil.which("node")
    if not node:
        raise SimulatorError(
            "node not found: the MicroPython interpreter runs under node (install nodejs)"
        )
    return node


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified_runtime(folder: Path | None = None) -> Path:
    """The interpreter folder, after checking each file against its pinned SHA-256."""
    folder = folder if folder is not None else runtime_dir()
    for name, expected in RUNTIME_FILES.items():
        path = folder / name
        if not path.is_file():
            raise SimulatorError(
                f"MicroPython runtime missing: {path} (run `make setup`, which fetches "
                f"npm {NPM_PACKAGE})"
            )
        if _sha256(path) != expected:
            raise SimulatorError(
                f"MicroPython runtime altered: {path} does not match its pinned SHA-256; "
                "delete the folder and run `make setup` again"
            )
    return folder


def firmware_files() -> list[tuple[Path, str]]:
    """(host file, path inside the interpreter) for every firmware module."""
    return [(PACKAGE_ROOT / rel, "/firmware_bridge/" + rel) for rel in FIRMWARE_MODULES]


__all__ = [
    "MICROPYTHON_VERSION",
    "NPM_PACKAGE",
    "NPM_TARBALL_SHA256",
    "RUNTIME_FILES",
    "SimulatorError",
    "firmware_files",
    "node_executable",
    "runtime_dir",
    "verified_runtime",
]

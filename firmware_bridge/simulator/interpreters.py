"""Opens the simulated firmware on the interpreter asked for (each backend loaded only then)."""

from __future__ import annotations

from firmware_bridge.simulator.backends import INTERPRETERS, SimulatedFirmware


def open_firmware(
    interpreter: str,
    hmac_key: bytes,
    *,
    heartbeat_timeout_ms: int = 1000,
    max_pulse_ms: int = 5000,
    manual_clock: bool = False,
) -> SimulatedFirmware:
    """A booted-to-be backend on ``interpreter`` (one of :data:`INTERPRETERS`)."""
    options = {
        "heartbeat_timeout_ms": heartbeat_timeout_ms,
        "max_pulse_ms": max_pulse_ms,
        "manual_clock": manual_clock,
    }
    if interpreter == "cpython":
        from firmware_bridge.simulator.in_process import InProcessFirmware

        return InProcessFirmware(hmac_key, **options)
    if interpreter == "micropython":
        from firmware_bridge.simulator.micropython_process import MicroPythonFirmware

        return MicroPythonFirmware(hmac_key, **options)
    raise ValueError(f"interpreter must be one of {', '.join(INTERPRETERS)}, not {interpreter!r}")


__all__ = ["open_firmware"]

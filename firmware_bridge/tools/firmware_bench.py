"""``gatectl bench firmware``: the firmware's cost per frame and per tick, and an RP2040 estimate.

Runs ``firmware_cost.measure`` on CPython and inside MicroPython (the webassembly port),
then scales the MicroPython figures to a Raspberry Pi Pico with the reference loop both
interpreters time in the same run:

    rp2040_us = micropython_us * RP2040_REFERENCE_US / micropython_reference_us

Basis of :data:`RP2040_REFERENCE_US` (an estimate, not a measurement; good to about a
factor of 1.5 either way):

* MicroPython's ``misc_pystone`` benchmark on a pyboard v1.0 (STM32F405, Cortex-M4 at
  168 MHz) takes 162,376 us for 300 units of work (MicroPython pull request #4858, the
  maintainer's run of the perf_bench suite): 541 us per unit;
* an RP2040 at 125 MHz scores 228 CoreMark (PaulStoffregen/CoreMark pull request #15),
  a Cortex-M4 at 168 MHz about 571 (Arm's 3.40 CoreMark/MHz): the pyboard is ~2.5 times
  faster, so ~1,353 us per pystone unit on a Pico;
* on MicroPython's webassembly port here one pystone unit costs 1.2 times one iteration
  of ``firmware_cost.reference_work`` (both timed in one interpreter, 2026-12-01):
  1,353 / 1.2 = ~1,128 us per reference iteration on a Pico.

Measure on a board instead once it is deployed: ``mpremote run
firmware_bridge/tools/firmware_cost.py`` prints the same figures from the Pico itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from firmware_bridge.simulator.micropython_process import MicroPythonProcess
from firmware_bridge.simulator.micropython_runtime import SimulatorError
from firmware_bridge.tools import firmware_cost
from gate_contract.progress import SILENT, Progress

RP2040_REFERENCE_US = 1128.0
RP2040_BASIS = (
    "pyboard v1.0 misc_pystone 541 us/unit (MicroPython PR #4858) x 2.5 (CoreMark: RP2040 "
    "@125 MHz 228, Cortex-M4 @168 MHz ~571) / 1.2 (pystone unit vs reference loop, "
    "measured on MicroPython/wasm) = 1128 us per reference loop on an RP2040"
)
TICK_PERIOD_MS = 10  # pico_main.TICK_MS
HEARTBEAT_PERIOD_MS = 250  # host heartbeat interval (PROTOCOL.md)
ACK_TIMEOUT_MS = 200  # host retransmits after this (PROTOCOL.md)
UART_RXBUF = 512  # pico_main.UartTransport's receive buffer
UART_BYTES_PER_MS = 115200 / 10 / 1000  # 8N1
# What firmware_cost measures, per frame or tick (us), scaled to the RP2040.
FIGURES = (
    "heartbeat_frame_us",
    "indicator_frame_us",
    "status_request_frame_us",
    "relay_pulse_frame_us",
    "bad_crc_frame_us",
    "tag_check_us",
    "tick_us",
)


def _on_micropython(frames: int) -> dict:
    module = Path(firmware_cost.__file__)
    process = MicroPythonProcess(module, answer_timeout=300.0)
    try:
        answer = json.loads(process.request(f"measure {frames}"))
    finally:
        process.close()
    if "error" in answer:
        raise SimulatorError(f"firmware bench failed on MicroPython: {answer['error']}")
    return answer


def _rp2040(micropython: dict) -> dict:
    scale = RP2040_REFERENCE_US / micropython["reference_us"]["median"]
    figures = {key: round(micropython[key]["median"] * scale, 1) for key in FIGURES}
    pulse_ms = figures["relay_pulse_frame_us"] / 1000
    return {
        "scale_vs_micropython_here": round(scale, 1),
        **figures,
        "cpu_share_ticks": round(figures["tick_us"] / (TICK_PERIOD_MS * 1000), 4),
        "cpu_share_heartbeats": round(
            figures["heartbeat_frame_us"] / (HEARTBEAT_PERIOD_MS * 1000), 4
        ),
        "relay_pulse_ms_vs_ack_timeout_ms": [round(pulse_ms, 1), ACK_TIMEOUT_MS],
        "uart_bytes_arriving_during_a_pulse": round(pulse_ms * UART_BYTES_PER_MS),
        "uart_rxbuf_bytes": UART_RXBUF,
        "basis": RP2040_BASIS,
    }


def bench_firmware(frames: int = 2000, progress: Progress = SILENT) -> dict:
    """Both interpreters' batch means (us) and the RP2040 estimate; raises SimulatorError."""
    if frames < 100:
        raise ValueError("frames must be at least 100")
    with progress.bar("interpreters", total=2, unit="interpreter") as bar:
        bar.set_postfix_str("CPython")
        cpython = firmware_cost.measure(frames)
        bar.update()
        bar.set_postfix_str("MicroPython (webassembly)")
        micropython = _on_micropython(frames)
        bar.update()
    return {"cpython": cpython, "micropython": micropython, "rp2040_estimate": _rp2040(micropython)}


__all__ = [
    "ACK_TIMEOUT_MS",
    "FIGURES",
    "HEARTBEAT_PERIOD_MS",
    "RP2040_BASIS",
    "RP2040_REFERENCE_US",
    "TICK_PERIOD_MS",
    "UART_BYTES_PER_MS",
    "UART_RXBUF",
    "bench_firmware",
]

"""The one way both programs load onnxruntime: with its telemetry off.

onnxruntime (1.2x+) keeps a telemetry store and a device id under
``$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime`` from its native library, where
Python's audit hook never sees the write. It reads ``ORT_DISABLE_TELEMETRY`` once, when
the library loads, so the variable is set here before the first import; a process that
imported onnxruntime some other way first is refused, rather than left writing.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

TELEMETRY_VARIABLE = "ORT_DISABLE_TELEMETRY"


class TelemetryNotDisabled(RuntimeError):
    """onnxruntime was loaded before its telemetry could be turned off."""


def load_onnxruntime() -> ModuleType:
    """``onnxruntime``, loaded with telemetry disabled (raises :class:`TelemetryNotDisabled`
    if it was already loaded without)."""
    if "onnxruntime" in sys.modules and os.environ.get(TELEMETRY_VARIABLE) != "1":
        raise TelemetryNotDisabled(
            "onnxruntime was imported before gate_contract.onnx.load_onnxruntime():"
            " its telemetry store would be written; import it through this function"
        )
    os.environ[TELEMETRY_VARIABLE] = "1"
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    return onnxruntime


__all__ = ["TELEMETRY_VARIABLE", "TelemetryNotDisabled", "load_onnxruntime"]

"""onnxruntime is loaded with its telemetry off, or not at all."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gate_contract.onnx import TELEMETRY_VARIABLE


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from gate_contract.onnx import load_onnxruntime; load_onnxruntime()", "1"),
        (
            "import onnxruntime; from gate_contract.onnx import load_onnxruntime;"
            " load_onnxruntime()",
            "TelemetryNotDisabled",
        ),
    ],
)
def test_telemetry_is_off_before_the_library_loads(code: str, expected: str) -> None:
    env_probe = f"; import os; print(os.environ['{TELEMETRY_VARIABLE}'])"
    done = subprocess.run(
        [sys.executable, "-c", code + env_probe],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert expected in done.stdout + done.stderr

"""The interpreter every conformance test runs the firmware on: CPython and MicroPython.

A test that takes ``interpreter`` (directly or through a fixture) runs once per
interpreter; the MicroPython run is marked ``micropython`` (select or skip it with
``-m``). MicroPython's runtime comes from set-up (``make setup``); without it those runs
fail with the reason, they are not skipped.
"""

import pytest

from firmware_bridge.simulator import INTERPRETERS


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.micropython] if name == "micropython" else [])
        for name in INTERPRETERS
    ]
)
def interpreter(request: pytest.FixtureRequest) -> str:
    return request.param

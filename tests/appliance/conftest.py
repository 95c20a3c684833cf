"""Fixtures of the appliance's unit tests: a gate machine on a fake MCU link, a ledger."""

from __future__ import annotations

import pytest

from appliance.custody.ledger import PurgeLedger
from appliance.gate.machine import GateController
from testbed.testing import FakeLink


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


@pytest.fixture
def gate(link):
    gate = GateController(link, passage_window_s=5.0)
    gate.start()
    yield gate
    gate.close()


@pytest.fixture
def ledger(tmp_path) -> PurgeLedger:
    return PurgeLedger(tmp_path / "ledger.jsonl")

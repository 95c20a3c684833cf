"""Process hardening: no core dumps, a shutdown that waits for the purge, logs without images."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from appliance import shutdown
from appliance.custody import transaction as transaction_module
from appliance.custody.transaction import CaptureTransaction
from appliance.service import hardening
from appliance.service.log_filter import ImageDataFilter, install_log_filters
from appliance.shutdown import ShutdownRequested, deferred_shutdown, install_shutdown_handler
from tests.support import REPO

HARDEN_SCRIPT = """
import json, resource
from appliance.service.hardening import harden_process, is_dumpable
report = harden_process()
print(json.dumps({
    "core": resource.getrlimit(resource.RLIMIT_CORE),
    "dumpable": is_dumpable(),
    "report": [report.core_dumps_disabled, report.not_dumpable],
    "problems": report.problems,
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_harden_process_disables_core_dumps_and_dumpability() -> None:
    before = subprocess.run(
        [
            sys.executable,
            "-c",
            "from appliance.service.hardening import is_dumpable; print(is_dumpable())",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert before.stdout.strip() == "True"  # so the check below can fail
    result = subprocess.run(
        [sys.executable, "-c", HARDEN_SCRIPT], capture_output=True, text=True, cwd=REPO, check=True
    )
    report = json.loads(result.stdout)
    assert report["core"] == [0, 0]
    assert report["dumpable"] is False
    assert report["report"] == [True, True] and report["problems"] == []


def test_harden_process_tolerates_failures(monkeypatch) -> None:
    import resource

    def refuse(*_args):
        raise ValueError("not allowed here")

    monkeypatch.setattr(resource, "setrlimit", refuse)
    monkeypatch.setattr(hardening.sys, "platform", "plan9")
    report = hardening.harden_process()
    assert not report.core_dumps_disabled and not report.not_dumpable
    assert len(report.problems) == 2


# --- shutdown ---------------------------------------------------------------------------------


@pytest.fixture
def shutdown_handler():
    restore = install_shutdown_handler((signal.SIGUSR1,))
    try:
        yield
    finally:
        restore()


def _spin() -> None:
    for _ in range(1000):  # bytecode boundaries: where Python runs signal handlers
        pass


def test_signal_raises_shutdown_requested(shutdown_handler) -> None:
    with pytest.raises(ShutdownRequested, match="SIGUSR1"):
        os.kill(os.getpid(), signal.SIGUSR1)
        _spin()


def test_signal_during_a_purge_waits_until_the_purge_is_done(shutdown_handler, monkeypatch):
    frame = np.full((720, 1280, 3), 200, np.uint8)
    blob = bytearray(b"\x07" * 64)
    tx = CaptureTransaction("dev")
    tx.track(frame)
    tx.track(blob)
    real_zeroize = transaction_module.zeroize
    calls: list[int] = []

    def zeroize_with_signal(buffer):
        if not calls:
            os.kill(os.getpid(), signal.SIGUSR1)  # lands in the middle of the purge
            _spin()
        calls.append(1)
        return real_zeroize(buffer)

    monkeypatch.setattr(transaction_module, "zeroize", zeroize_with_signal)
    with pytest.raises(ShutdownRequested):
        tx.purge("granted", "verdict")
    assert len(calls) == 2
    assert not frame.any() and not any(blob)
    assert tx.record is not None and tx.record.buffers_zeroized == 2


def test_ledger_append_is_not_cut_by_a_signal(shutdown_handler, tmp_path, monkeypatch) -> None:
    from appliance.custody import ledger as ledger_module

    ledger = ledger_module.PurgeLedger(tmp_path / "l.jsonl")
    real_write = ledger_module.write_private

    def write_with_signal(path, data):
        os.kill(os.getpid(), signal.SIGUSR1)  # between the line and the head
        _spin()
        real_write(path, data)

    monkeypatch.setattr(ledger_module, "write_private", write_with_signal)
    with pytest.raises(ShutdownRequested):
        ledger.append(CaptureTransaction("dev").purge("referred", "shutdown"))
    assert ledger.verify() == 1
    assert ledger.check().notes == []


def test_deferred_shutdown_without_a_signal_is_transparent(shutdown_handler) -> None:
    steps: list[str] = []
    with deferred_shutdown():
        with deferred_shutdown():
            steps.append("inner")
        steps.append("outer")  # leaving the inner block alone raised nothing
    assert steps == ["inner", "outer"]
    with pytest.raises(KeyError), deferred_shutdown():  # the block's own errors pass through
        raise KeyError("x")
    assert shutdown._defer_depth == 0 and shutdown._pending is None
    # Deferral is over: a signal now raises at once instead of waiting for a block's end.
    with pytest.raises(ShutdownRequested, match="SIGUSR1"):
        os.kill(os.getpid(), signal.SIGUSR1)
        _spin()


# --- log filter -------------------------------------------------------------------------------


def _record(msg: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    return logging.LogRecord("gate.test", logging.INFO, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize(
    "args",
    [
        (b"\xff\xd8\xff\xe0 jpeg",),
        (bytearray(300),),
        (memoryview(b"abc"),),
        (np.zeros((4, 4, 3), np.uint8),),
        (np.float32(1.5),),
    ],
)
def test_binary_arguments_are_withheld(args) -> None:
    record = _record("payload %s", *args)
    assert ImageDataFilter().filter(record)
    message = record.getMessage()
    assert message.startswith("<log record withheld: binary field")
    assert "\\xff" not in message and "jpeg" not in message


def test_base64_and_signatures_in_text_are_withheld() -> None:
    blob = base64.b64encode(b"\xff\xd8\xff\xe0" + os.urandom(400)).decode()
    for text in (f"sent {blob}", "header \\xff\\xd8\\xff\\xe0", "iVBORw0KGgoAAAANSUhEUg"):
        record = _record("%s", text)
        ImageDataFilter().filter(record)
        assert "withheld" in record.getMessage(), text
        assert blob not in record.getMessage()


def test_exception_text_with_image_data_is_withheld() -> None:
    blob = base64.b64encode(os.urandom(600)).decode()
    record = _record("transaction failed", exc=ValueError(f"bad frame {blob}"))
    ImageDataFilter().filter(record)
    assert record.exc_info is None and "withheld" in record.getMessage()


def test_ordinary_records_pass_unchanged() -> None:
    record = _record(
        "transaction %s purged %d buffers, sealed %s",
        "0b7d3c1e-2f4a-4c59-9a51-000000000001",
        4,
        "ab" * 32,
    )
    ImageDataFilter().filter(record)
    assert record.getMessage().startswith("transaction 0b7d3c1e")


def test_install_log_filters_guards_every_root_handler() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    root = logging.getLogger()
    handler = Collect()
    root.addHandler(handler)
    try:
        install_log_filters()
        install_log_filters()  # idempotent
        assert sum(isinstance(f, ImageDataFilter) for f in handler.filters) == 1
        logging.getLogger("gate.anything").warning("frame %r", b"\x89PNG\r\n\x1a\n" + bytes(64))
        logging.getLogger("gate.anything").warning("ok %s", "fine")
    finally:
        root.removeHandler(handler)
    assert len(lines) == 2
    assert "withheld" in lines[0] and "PNG" not in lines[0]
    assert lines[1] == "ok fine"

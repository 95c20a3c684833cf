"""Logging to the systemd journal with structured fields, or to stderr where there is none.

Every record the service logs carries ``GATE_ID``, ``GATE_STATE`` and, when it names
a capture (see below), ``CAPTURE_ID`` as journal fields, so a technician can ask
``journalctl -u gate-appliance GATE_STATE=out_of_service`` or follow one capture with
``journalctl CAPTURE_ID=...``. :class:`GateFieldsFilter` adds them to each record (as
upper-case attributes, which ``systemd.journal.JournalHandler`` sends as fields). A
record names its capture with ``extra={"capture_id": ...}``, or runs inside
``appliance.log_context.capture_context`` (the pipeline wraps each transaction in it).

``systemd-python`` is an optional extra (the ``device`` one) and the journal socket
exists only on a host where journald runs: without either, records go to stderr with
the same fields appended (``gate=... state=... capture=...``), which journald would still
collect from a service's stderr, only unstructured.

Records pass through ``appliance.hardening.ImageDataFilter`` like every other handler's,
so no image bytes reach the journal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.log_context import current_capture

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
SYSLOG_IDENTIFIER = "gate-appliance"
FIELDS = ("GATE_ID", "GATE_STATE", "CAPTURE_ID")


class GateFieldsFilter(logging.Filter):
    """Adds GATE_ID, GATE_STATE and CAPTURE_ID to every record it sees; never drops one."""

    def __init__(self, gate_id: str, state: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.gate_id = gate_id
        self._state = state or (lambda: "")

    def set_state_source(self, state: Callable[[], str]) -> None:
        self._state = state

    def filter(self, record: logging.LogRecord) -> bool:
        record.GATE_ID = self.gate_id
        try:
            record.GATE_STATE = str(self._state() or "")
        except Exception:  # a state source must never stop a log line
            record.GATE_STATE = ""
        capture = getattr(record, "capture_id", "") or current_capture()
        record.CAPTURE_ID = str(capture) if capture else ""
        return True


_LABELS = (("GATE_ID", "gate"), ("GATE_STATE", "state"), ("CAPTURE_ID", "capture"))


class StderrFieldsFormatter(logging.Formatter):
    """The stderr fallback: the usual line plus the journal fields that are set."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        parts = [
            f"{label}={getattr(record, name)}"
            for name, label in _LABELS
            if getattr(record, name, "")
        ]
        return f"{line} [{' '.join(parts)}]" if parts else line


def _journal_module():
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal if hasattr(journal, "JournalHandler") else None


def journal_available(socket_path: Path = JOURNAL_SOCKET) -> bool:
    return _journal_module() is not None and socket_path.exists()


def make_handler(socket_path: Path = JOURNAL_SOCKET, stream=None) -> logging.Handler:
    """A ``JournalHandler`` when systemd-python imports and journald listens, else stderr."""
    journal = _journal_module()
    if journal is not None and socket_path.exists():
        return journal.JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StderrFieldsFormatter())
    return handler


def setup_logging(
    gate_id: str,
    state: Callable[[], str] | None = None,
    *,
    level: int = logging.INFO,
    logger: logging.Logger | None = None,
    socket_path: Path | None = None,
) -> GateFieldsFilter:
    """Route ``logger`` (default root) to the journal (or stderr) with the gate's fields.

    Replaces the logger's handlers; installs the image-data filter on the new handler.
    Returns the fields filter so the caller can point it at the gate's state later.
    """
    from appliance.service.log_filter import install_log_filters

    target = logger or logging.getLogger()
    for old in list(target.handlers):
        target.removeHandler(old)
    path = socket_path or Path(os.environ.get("GATE_JOURNAL_SOCKET", str(JOURNAL_SOCKET)))
    handler = make_handler(path)
    fields = GateFieldsFilter(gate_id, state)
    handler.addFilter(fields)
    target.addHandler(handler)
    target.setLevel(level)
    install_log_filters(target)
    return fields


__all__ = [
    "FIELDS",
    "JOURNAL_SOCKET",
    "SYSLOG_IDENTIFIER",
    "GateFieldsFilter",
    "StderrFieldsFormatter",
    "journal_available",
    "make_handler",
    "setup_logging",
]

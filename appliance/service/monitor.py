"""What the service knows about itself: its state, counters and last errors.

:class:`ServiceMonitor` feeds the ``STATUS=`` lines systemd shows and the status file
``gatectl status`` reads (``appliance.service.status``); it never holds an image, a key or
a traveller token.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from appliance.gate.outcome import Outcome
from appliance.service import sd_notify
from appliance.service.config import GateConfig
from appliance.service.heartbeat import PipelineHeartbeat
from appliance.service.log_filter import ImageDataFilter
from appliance.service.status import ErrorTail, StatusWriter, iso_time
from appliance.vision.frame_pump import FramePump

if TYPE_CHECKING:
    from appliance.service.parts import ServiceParts


def _installed_version() -> str:
    try:
        return version("gate-appliance")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


VERSION = _installed_version()
STATUS_REFRESH_S = 30.0  # the status file is rewritten at least this often (freshness)


class ServiceState(enum.StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    STALLED = "stalled"  # no camera frame within [service] stall_s: watchdog pings stop
    STARTUP_FAILED = "start-up failed"
    STOPPED = "stopped"


class ErrorLog(logging.Handler):
    """Collects WARNING and ERROR lines for the status file's "last errors"."""

    def __init__(self, tail: ErrorTail) -> None:
        super().__init__(logging.WARNING)
        self.tail = tail
        self.addFilter(ImageDataFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tail.add(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


class ServiceMonitor:
    """What the service knows about itself, for ``STATUS=`` lines and the status file."""

    def __init__(self, config: GateConfig, heartbeat: PipelineHeartbeat | None = None) -> None:
        self.config = config
        self.heartbeat = heartbeat or PipelineHeartbeat()
        self.counts: Counter[str] = Counter(
            {Outcome.GRANTED: 0, Outcome.REFERRED: 0, Outcome.MANUAL_CHECK: 0}
        )
        self._count_lock = threading.Lock()
        self.errors = ErrorTail()
        self.service = ServiceState.STARTING
        self.parts: ServiceParts | None = None
        self.screens_url: str | None = None  # where the screens are served, if they are
        self.healthy = True
        self.writer = StatusWriter(config.status_path, self.collect)
        self._last_state = ""
        self._dirty = threading.Event()
        self._written_at = 0.0
        self.started_at = time.time()
        self.last_traveller: dict[str, str] | None = None  # outcome and time, nothing else

    def gate_state(self) -> str:
        return self.parts.gate.phase.value if self.parts else "out_of_service"

    def mark_dirty(self, *_: object) -> None:
        self._dirty.set()

    def count(self, outcome: Outcome) -> None:
        """One traveller served (the serve loop and the scanner thread both count)."""
        with self._count_lock:
            self.counts[outcome] += 1
            self.last_traveller = {"outcome": str(outcome), "at": iso_time(time.time())}

    def dropped(self) -> int:
        source = self.parts.source if self.parts else None
        return source.dropped if isinstance(source, FramePump) else 0

    def status_line(self) -> str:
        c = self.counts
        return (
            f"served {sum(c.values())}: granted {c['granted']}, referred {c['referred']},"
            f" manual check {c['manual_check']}; frames dropped {self.dropped()};"
            f" gate {self.gate_state()}"
        )

    def collect(self) -> dict[str, Any]:
        f = self.config.flight
        links: dict[str, str] = {"serial": "down", "matcher": "unknown", "camera": "unknown"}
        if self.parts is not None:
            links["serial"] = "up" if self.parts.link.link_up else "down"
            session = self.parts.session.state
            links["matcher"] = "up" if session.open else f"down ({session.detail})"
            links["camera"] = "ok" if self.healthy else "stalled"
        return {
            "device_id": self.config.device_id,
            "service": self.service.value,
            "state": self.gate_state(),
            "mode": self.config.capture_mode,
            "flight": {
                "carrier": f.carrier,
                "number": f.flight_number,
                "date": f.date,
                "airport": f.departure_airport,
                "gate": f.gate,
            },
            "counters": {
                "served": sum(self.counts.values()),
                "granted": self.counts["granted"],
                "referred": self.counts["referred"],
                "manual_check": self.counts["manual_check"],
                "frames": self.heartbeat.frames,
                "frames_dropped": self.dropped(),
            },
            "links": links,
            "pipeline": {
                "last_frame_age_s": round(self.heartbeat.age(), 1),
                "stall_s": self.config.stall_s,
            },
            "ledger": self._ledger(),
            "session": self._session(),
            "last_traveller": self.last_traveller,
            "started_at": iso_time(self.started_at),
            "started_at_s": round(self.started_at, 3),
            "version": VERSION,
            "last_errors": self.errors.items(),
            "screens": self.screens_url,
        }

    def _ledger(self) -> dict[str, Any]:
        """Whether purge records are being made durable, and why not (no gate grants then)."""
        if self.parts is None:
            return {"durable": None}
        ledger = self.parts.pipeline.ledger
        owed = self.parts.receipts.owed if self.parts.receipts is not None else 0
        return {
            "durable": ledger.durable,
            "records": ledger.count,
            "waiting": ledger.pending,
            "failure": ledger.failure,
            "receipts_owed": owed,
        }

    def _session(self) -> dict[str, Any]:
        """The flight session: open or not, since when, the gallery's size."""
        if self.parts is None:
            return {"open": False, "gallery_size": None, "detail": "not started"}
        state = self.parts.session.state
        return {
            "open": state.open,
            "gallery_size": state.gallery_size,
            "detail": state.detail,
            "since": iso_time(state.since),
        }

    def on_tick(self, healthy: bool) -> None:
        """Every feeder round: refresh the status file when anything changed."""
        changed = self._dirty.is_set() or healthy != self.healthy
        self.healthy = healthy
        if self.service in (ServiceState.SERVING, ServiceState.STALLED):
            service = ServiceState.SERVING if healthy else ServiceState.STALLED
            changed = changed or service != self.service
            self.service = service
        state = self.gate_state()
        if state != self._last_state:
            self._last_state = state
            sd_notify.notify(f"STATUS={self.status_line()}")
            changed = True
        if changed or time.monotonic() - self._written_at >= STATUS_REFRESH_S:
            self._dirty.clear()
            self.write()

    def write(self, **overrides: Any) -> bool:
        self._written_at = time.monotonic()
        return self.writer.write(**overrides)


__all__ = ["STATUS_REFRESH_S", "VERSION", "ErrorLog", "ServiceMonitor", "ServiceState"]

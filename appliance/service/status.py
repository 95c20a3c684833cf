"""``gatectl status``: what the running service last said about itself.

The service rewrites one small JSON file in its state directory (``[service]
status_path``, default ``$GATE_DATA_DIR/status.json``) whenever something a technician
would ask about changes: service and gate state, flight, counters, link states, the
last errors. It is written to a temporary file in the same folder and renamed over the
old one, so a reader never sees half a file. It holds names, numbers and short texts
only: never an image, never a key, never a traveller token.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate_contract.documents import parse_json
from gate_contract.files import write_private

MAX_ERRORS = 5
MAX_ERROR_CHARS = 200
STALE_AFTER_S = 120.0  # the service refreshes the file at least this often while running


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``status`` as JSON (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(status, sort_keys=True, indent=1) + "\n").encode()
    write_private(path, data)


def read_status(path: Path) -> dict[str, Any]:
    """The status the service last wrote; raises OSError/ValueError if unreadable."""
    status = parse_json(path.read_text(encoding="utf-8"))
    if not isinstance(status, dict):
        raise ValueError(f"{path} does not hold a status object")
    return status


class ErrorTail:
    """The last few error lines, as short texts with their time (for the status file)."""

    def __init__(self, size: int = MAX_ERRORS) -> None:
        self._items: deque[dict[str, str]] = deque(maxlen=size)

    def add(self, message: str) -> None:
        text = " ".join(message.split())[:MAX_ERROR_CHARS]
        self._items.append({"at": iso_time(time.time()), "message": text})

    def items(self) -> list[dict[str, str]]:
        return list(self._items)


def iso_time(seconds: float) -> str:
    """UTC, to the second, as the status file writes times."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


class StatusWriter:
    """Builds the status document from the service's parts and writes it when asked."""

    def __init__(self, path: Path, collect: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._collect = collect
        self.failures = 0

    def write(self, **overrides: Any) -> bool:
        try:
            status = self._collect()
            status.update(overrides)
            status["updated_at"] = iso_time(time.time())
            status["updated_at_s"] = round(time.time(), 3)
            status["pid"] = os.getpid()
            write_status(self.path, status)
            return True
        except Exception:  # status is a convenience: it never stops the gate
            self.failures += 1
            return False


def _age(status: dict[str, Any], now: float) -> float | None:
    value = status.get("updated_at_s")
    return now - value if isinstance(value, int | float) else None


def format_status(status: dict[str, Any], now: float | None = None) -> list[str]:
    """Human lines for a technician."""
    now = time.time() if now is None else now
    lines = []
    age = _age(status, now)
    stale = age is not None and age > STALE_AFTER_S
    service = status.get("service", "?")
    lines.append(
        f"gate {status.get('device_id', '?')}: service {service}, gate {status.get('state', '?')}"
        + (f"  (STALE: last update {age:.0f} s ago; is the service running?)" if stale else "")
    )
    flight = status.get("flight") or {}
    if flight:
        lines.append(
            "flight   {carrier}{number} {date} from {airport}{gate}, mode {mode}".format(
                carrier=flight.get("carrier", ""),
                number=flight.get("number", ""),
                date=flight.get("date", ""),
                airport=flight.get("airport", ""),
                gate=f" gate {flight['gate']}" if flight.get("gate") else "",
                mode=status.get("mode", "?"),
            )
        )
    counters = status.get("counters") or {}
    if counters:
        lines.append("counters " + ", ".join(f"{k} {v}" for k, v in counters.items()))
    links = status.get("links") or {}
    if links:
        lines.append("links    " + ", ".join(f"{k} {v}" for k, v in links.items()))
    errors = status.get("last_errors") or []
    if errors:
        lines.append("last errors:")
        lines.extend(f"  {e.get('at', '?')}  {e.get('message', '')}" for e in errors)
    else:
        lines.append("last errors: none")
    lines.append(f"updated  {status.get('updated_at', '?')} (pid {status.get('pid', '?')})")
    return lines


def show_status(path: Path, as_json: bool = False, out: Callable[[str], object] = print) -> int:
    """``gatectl status``: 0 when the file was read, 1 when there is none or it is bad."""
    try:
        status = read_status(path)
    except FileNotFoundError:
        out(f"no status at {path}: the service has not run yet (or another status_path is set)")
        return 1
    except (OSError, ValueError) as exc:
        out(f"cannot read status {path}: {exc}")
        return 1
    if as_json:
        out(json.dumps(status, sort_keys=True))
    else:
        for line in format_status(status):
            out(line)
    return 0


__all__ = [
    "MAX_ERRORS",
    "MAX_ERROR_CHARS",
    "STALE_AFTER_S",
    "ErrorTail",
    "StatusWriter",
    "format_status",
    "iso_time",
    "read_status",
    "show_status",
    "write_status",
]

"""``gatectl status``: what the service last said about itself, checked against what is
true now, with an exit code a script can trust (like ``systemctl is-active``).

The status file (``appliance.service.status``) is only what the service wrote. This
command also asks: is that process still alive and still holding the unit's instance
lock (``appliance.service.instance``)? Is the file fresh? Does the matching service answer
a health probe over mutual TLS now (not the breaker's last opinion)? When does the device
certificate expire? Exit codes: 0 serving; 3 not serving (stopped, start-up failed, its
process gone, the file stale, the pipeline stalled); 4 no readable status file.
``--json`` prints one JSON object whatever happens; ``--watch`` redraws until Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.service.config import GateConfig
from appliance.service.instance import lock_holder
from appliance.service.status import STALE_AFTER_S, format_status, read_status

EXIT_SERVING = 0
EXIT_NOT_SERVING = 3
EXIT_NO_STATUS = 4
PROBE_DEADLINE_S = 2.0


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process (the service user's): alive
        return True
    return True


def assess(status: dict[str, Any], config: GateConfig | None, now: float) -> tuple[str, str]:
    """(verdict, why): "serving", or what is wrong with the service the file describes."""
    pid = status.get("pid")
    service = status.get("service", "?")
    if service in ("stopped", "start-up failed"):
        return service, f"the service {service} (pid {pid})"
    if config is not None:
        holder = lock_holder(config.lock_path)
        if holder is None or holder.get("pid") != pid:
            return "dead", f"the service that wrote this (pid {pid}) is not running"
    elif not _alive(pid):
        return "dead", f"the service that wrote this (pid {pid}) is not running"
    updated = status.get("updated_at_s")
    age = now - updated if isinstance(updated, int | float) else None
    if age is None or age > STALE_AFTER_S:
        shown = "never" if age is None else f"{age:.0f} s ago"
        return "stale", f"the status was last updated {shown}; the service may be hung"
    if service == "stalled":
        return "stalled", "no camera frame lately: the watchdog will restart the service"
    if service != "serving":
        return str(service), f"the service is {service}"
    return "serving", "serving"


def probe_matcher(config: GateConfig) -> str:
    """A live health check of the matching service with the unit's own certificate."""
    from appliance.matching.client import MatchingClient
    from gate_contract.keys import PkiLayout

    try:
        client = MatchingClient(
            config.matcher.target,
            PkiLayout(config.matcher.pki_dir),
            config.device_id,
            deadline_s=PROBE_DEADLINE_S,
            retries=0,
        )
    except (OSError, ValueError) as exc:
        return f"not probed: cannot read the device PKI ({exc})"
    try:
        serving = client.health()
    finally:
        client.close()
    return (
        f"SERVING ({config.matcher.target})"
        if serving
        else f"UNREACHABLE ({config.matcher.target})"
    )


def certificate_expiry(config: GateConfig, now: float) -> str:
    from cryptography import x509

    from gate_contract.keys import PkiLayout

    path = PkiLayout(config.matcher.pki_dir).device_cert
    try:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        return f"unreadable ({exc})"
    left = cert.not_valid_after_utc - dt.datetime.fromtimestamp(now, dt.UTC)
    when = cert.not_valid_after_utc.date().isoformat()
    if left.total_seconds() <= 0:
        return f"EXPIRED on {when}: `gatectl provision --rotate` with a new token"
    return f"valid until {when} ({left.days} days left)"


def unit_report(
    status_path: Path, config: GateConfig | None, now: float | None = None
) -> tuple[dict[str, Any], int]:
    """The status file with what was checked now, under ``"checked"``; and the exit code."""
    now = time.time() if now is None else now
    try:
        status = read_status(status_path)
    except FileNotFoundError:
        message = f"no status at {status_path}: the service has not run yet"
        return {"checked": {"verdict": "no status", "why": message}}, EXIT_NO_STATUS
    except (OSError, ValueError) as exc:
        message = f"cannot read status {status_path}: {exc}"
        return {"checked": {"verdict": "no status", "why": message}}, EXIT_NO_STATUS
    verdict, why = assess(status, config, now)
    checked: dict[str, Any] = {"verdict": verdict, "why": why}
    started = status.get("started_at_s")
    if verdict == "serving" and isinstance(started, int | float):
        checked["uptime_s"] = round(now - started)
    if config is not None:
        checked["matcher_probe"] = probe_matcher(config)
        checked["certificate"] = certificate_expiry(config, now)
    status["checked"] = checked
    return status, EXIT_SERVING if verdict == "serving" else EXIT_NOT_SERVING


def format_report(report: dict[str, Any], now: float | None = None) -> list[str]:
    checked = report.get("checked", {})
    if "device_id" not in report:
        return [checked.get("why", "no status")]
    lines = format_status(report, now)
    verdict = checked.get("verdict", "?")
    uptime = checked.get("uptime_s")
    head = f"now      {verdict.upper()}"
    if verdict != "serving":
        head += f": {checked.get('why', '')}"
    elif uptime is not None:
        head += f" for {dt.timedelta(seconds=int(uptime))}"
    lines.insert(1, head)
    session = report.get("session") or {}
    if session:
        size = session.get("gallery_size")
        gallery = "unknown" if size is None else ("EMPTY (nobody can match)" if size == 0 else size)
        state = "open" if session.get("open") else f"not open ({session.get('detail', '')})"
        lines.append(f"session  {state}; flight gallery {gallery}")
    if "matcher_probe" in checked:
        lines.append(f"matcher  {checked['matcher_probe']} (probed now)")
    if "certificate" in checked:
        lines.append(f"cert     {checked['certificate']}")
    ledger = report.get("ledger") or {}
    if ledger.get("durable") is not None:
        durable = "durable" if ledger["durable"] else f"NOT durable ({ledger.get('failure')})"
        lines.append(
            f"ledger   {durable}; {ledger.get('records', 0)} records,"
            f" {ledger.get('waiting', 0)} waiting; purge receipts owed"
            f" {ledger.get('receipts_owed', 0)}"
        )
    last = report.get("last_traveller")
    lines.append(
        f"last     {last['outcome']} at {last['at']}" if last else "last     no traveller yet"
    )
    if report.get("version"):
        lines.append(f"version  {report['version']}, started {report.get('started_at', '?')}")
    return lines


def show(
    status_path: Path,
    config: GateConfig | None,
    *,
    as_json: bool = False,
    watch_s: float | None = None,
    out: Callable[[str], object] = print,
) -> int:
    """``gatectl status`` (``--watch``: redraw every ``watch_s`` seconds until Ctrl-C)."""
    while True:
        report, code = unit_report(status_path, config)
        if watch_s is not None and not as_json and sys.stdout.isatty():
            out("\x1b[H\x1b[2J")
        if as_json:
            out(json.dumps(report, sort_keys=True))
        else:
            for line in format_report(report):
                out(line)
        if watch_s is None:
            return code
        try:
            time.sleep(watch_s)
        except KeyboardInterrupt:
            return code


__all__ = [
    "EXIT_NOT_SERVING",
    "EXIT_NO_STATUS",
    "EXIT_SERVING",
    "PROBE_DEADLINE_S",
    "assess",
    "certificate_expiry",
    "format_report",
    "probe_matcher",
    "show",
    "unit_report",
]

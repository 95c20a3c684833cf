"""A reload of the running service (``SIGHUP``, ``systemctl reload``, what ``gatectl
flight set`` sends): the flight of the day is changed without a restart.

Only ``[flight]`` is applied: the configuration file is read and checked exactly as at
start (a bad file changes nothing and is logged); any other change is named in a WARNING
and waits for a restart. :class:`Reloader` applies it on its own thread, between
travellers: the workflow boards the new flight (its boarding-pass check, its one-boarding
register) and, under the workflow's lock, the session keeper drops the old flight's
session; the gate is out of service until the new one is open, so nobody is verified
against the old flight's gallery.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.errors import ConfigError
from appliance.service.config import GateConfig, load_service_config

if TYPE_CHECKING:
    from appliance.service.monitor import ServiceMonitor
    from appliance.service.parts import ServiceParts

log = logging.getLogger("gate.service")

TRAVELLER_POLL_S = 0.2  # a reload waits for the traveller at the gate this often


class Reloader:
    """Applies a requested reload on its own thread (the serve loop is not involved)."""

    def __init__(
        self,
        config: GateConfig,
        parts: ServiceParts,
        monitor: ServiceMonitor,
        requested: threading.Event,
    ) -> None:
        self.config = config
        self._parts = parts
        self._monitor = monitor
        self._requested = requested
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reloader", daemon=True)

    def start(self) -> Reloader:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._requested.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._requested.wait()
            self._requested.clear()
            if self._stop.is_set():
                return
            try:
                self.config = apply_reload(self.config, self._parts, self._monitor)
            except Exception:  # a reload never stops the gate
                log.exception("reload failed; the flight is unchanged")


def install_reload_signal(requested: threading.Event) -> Callable[[], None]:
    """``SIGHUP`` sets ``requested``; returns a restorer (a no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGHUP, lambda _signum, _frame: requested.set())

    def restore() -> None:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGHUP, previous)

    return restore


def apply_reload(config: GateConfig, parts: ServiceParts, monitor: ServiceMonitor) -> GateConfig:
    """Read the file again and apply its ``[flight]``; returns the configuration in force."""
    if config.source_path is None:
        log.warning("reload: this service was not started from a file; nothing to read")
        return config
    try:
        fresh = load_service_config(config.source_path)
    except ConfigError as exc:
        log.error("reload refused, nothing changed: %s", exc)
        return config
    others = [
        f.name
        for f in dataclasses.fields(GateConfig)
        if f.name not in ("flight", "source_path")
        and getattr(fresh, f.name) != getattr(config, f.name)
    ]
    if others:
        log.warning("reload applies [flight] only; restart the service for: %s", ", ".join(others))
    if fresh.flight == config.flight:
        log.info("reload: the flight is unchanged (%s)", config.flight.name)
        return config
    while not parts.workflow.change_flight(
        fresh.flight, also=lambda: parts.session.set_flight(fresh.flight)
    ):
        time.sleep(TRAVELLER_POLL_S)  # a traveller is at the gate: after them
    applied = dataclasses.replace(config, flight=fresh.flight)
    monitor.config = applied
    monitor.mark_dirty()
    log.info("reload: now boarding %s (was %s)", fresh.flight.name, config.flight.name)
    return applied


__all__ = ["TRAVELLER_POLL_S", "Reloader", "apply_reload", "install_reload_signal"]

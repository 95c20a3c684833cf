"""The flight session, kept open for as long as the service runs.

The service does not exit when the matching service is unreachable: at boot or later,
:class:`SessionKeeper` retries opening the session with capped exponential backoff, and
the serve loop keeps the gate out of service (relay shut, "see agent") until it is open
(``appliance.service.runner``). Once open, the session is reopened every ``[service]
session_refresh_s`` (a gallery enrolled or changed meanwhile shows in its new size) and at
once when the connection to the service drops (a restarted service has forgotten it), so
the next traveller is not referred for "unknown session". Its attempts are not behind
the client's circuit breaker (that one spares travellers a wait on a dead service): they
go on through an outage, and the first that succeeds closes the breaker. An empty flight
gallery is logged at WARNING: nobody can be matched at such a gate.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import MatchingUnavailable
from appliance.gate.flight import Flight
from appliance.matching.answers import Session
from appliance.matching.client import MatchingClient

log = logging.getLogger("gate.session")

RETRY_FIRST_S = 1.0
# Each attempt waits for the service up to the client's deadline (``wait_for_ready``), so
# a short cap still leaves at most one open attempt per gate at any time, and the session
# opens within seconds of the service's return.
RETRY_MAX_S = 4.0


@dataclass(frozen=True)
class SessionState:
    """What status and screens show about the session (no traveller data)."""

    open: bool
    gallery_size: int | None
    detail: str  # "open", or why not
    since: float  # time.time() of the last change


class SessionKeeper:
    """Opens the flight session, keeps it open and reopens it; one background thread."""

    def __init__(
        self,
        client: MatchingClient,
        flight: Flight,
        *,
        refresh_s: float,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self._client = client
        self._flight = flight
        self._refresh_s = refresh_s
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._lock = threading.Lock()
        self._state = SessionState(False, None, "not opened yet", time.time())
        self._ready = threading.Event()
        self._wake = threading.Event()  # reopen now (connection lost, flight changed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        self._outage_logged = False
        client.on_disconnect(self.reopen_soon)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the session opens, closes or its gallery changes."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def state(self) -> SessionState:
        with self._lock:
            return self._state

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def open_now(self) -> bool:
        """One attempt, on the caller's thread (start-up); True when the session is open."""
        try:
            session = self._client.open_session(self._flight, behind_breaker=False)
        except MatchingUnavailable as exc:
            self._lost(str(exc))
            return False
        self._opened(session)
        return True

    def reopen_soon(self) -> None:
        """Reopen as soon as possible (the connection dropped: the service may have
        restarted and forgotten the session)."""
        self._wake.set()

    def set_flight(self, flight: Flight) -> None:
        """The flight of the day changed (``gatectl flight set``): nobody is verified in
        the old flight's session from now on; the new one opens at once."""
        self._flight = flight
        with self._lock:
            self._state = SessionState(False, None, f"opening {flight.name}", time.time())
        self._ready.clear()
        self._changed()
        self._wake.set()

    def start(self) -> SessionKeeper:
        self._thread = threading.Thread(target=self._run, name="session-keeper", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        delay = self._retry_first_s
        while not self._stop.is_set():
            if self._ready.is_set():
                self._wake.wait(self._refresh_s)  # the refresh, or woken to reopen now
                self._wake.clear()
                if not self._stop.is_set():
                    self.open_now()
                delay = self._retry_first_s
                continue
            if self.open_now():
                delay = self._retry_first_s
                continue
            wait = delay * (0.75 + random.random() / 2)
            log.info("session: retrying in %.0f s", wait)
            self._wake.wait(wait)
            self._wake.clear()
            delay = min(delay * 2, self._retry_max_s)

    def _opened(self, session: Session) -> None:
        with self._lock:
            self._outage_logged = False
            before = self._state
            changed = not before.open or before.gallery_size != session.gallery_size
            self._state = SessionState(
                True, session.gallery_size, "open", time.time() if changed else before.since
            )
        self._ready.set()
        if not changed:
            return
        self._changed()
        if session.gallery_size == 0:
            log.warning(
                "session %s for %s: the flight gallery is EMPTY; nobody can be matched"
                " (enrol the flight on the matching service)",
                session.session_id,
                self._flight.name,
            )
        elif not before.open:
            log.info(
                "session %s for %s: gallery of %d",
                session.session_id,
                self._flight.name,
                session.gallery_size,
            )
        else:
            log.info(
                "session for %s: gallery now %d (was %s)",
                self._flight.name,
                session.gallery_size,
                before.gallery_size,
            )

    def _lost(self, why: str) -> None:
        with self._lock:
            first = not self._outage_logged  # one ERROR line per outage, not per retry
            self._outage_logged = True
            since = time.time() if self._state.open else self._state.since
            self._state = SessionState(False, self._state.gallery_size, why, since)
        self._ready.clear()
        self._changed()
        if first:
            log.error(
                "matching service unreachable (%s): the gate is out of service until the"
                " session opens; retrying",
                why,
            )


__all__ = ["RETRY_FIRST_S", "RETRY_MAX_S", "SessionKeeper", "SessionState"]

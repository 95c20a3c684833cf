"""The screens' connections: a deadline for every request, a cap per client address.

uvicorn arms its keep-alive timer only after a response, so a connection that never
finishes its first request (nothing sent, headers half sent, a body trickled, a TLS
handshake and then nothing) was held for ever, and with ``limit_concurrency`` 64 such
connections made every page answer 503. Here instead:

* the whole request (line, headers, body) must arrive within ``REQUEST_DEADLINE_S`` of
  the connection opening or of its first byte after a response, or the connection is
  closed (uvicorn's own keep-alive timeout covers the wait between requests);
* a client address may hold ``CONNECTIONS_PER_CLIENT`` connections and the network
  ``NETWORK_CONNECTIONS`` in all; beyond, a short 503 and the connection is closed. The
  unit's own screen (``settings.is_kiosk``) is never refused; on it only the deadline
  applies, so idle connections from there too are gone within seconds.

There is no server-wide concurrency limit any more: what a connection can hold open for
long (a live stream) is capped by ``limits.StreamSlots``. A TLS handshake that never
completes is held by asyncio's own handshake timeout (60 s) before this protocol sees
it; it blocks nobody, it only takes a file descriptor.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from appliance.screens.settings import is_kiosk

REQUEST_DEADLINE_S = 10.0
CONNECTIONS_PER_CLIENT = 16
NETWORK_CONNECTIONS = 128
_BUSY_TEXT = b"503 refused: too many connections open from the network\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)


def guarded_h11(deadline_s: float = REQUEST_DEADLINE_S) -> type[H11Protocol]:
    """An h11 protocol class for one server (its own connection counts)."""
    by_client: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        """uvicorn's h11 protocol with the request deadline and the connection caps."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if not is_kiosk(address):
                network = sum(by_client.values())
                if by_client[address] >= CONNECTIONS_PER_CLIENT or network >= NETWORK_CONNECTIONS:
                    transport.write(_BUSY)
                    transport.close()
                    return
                by_client[address] += 1
                self._counted = address
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is not None:
                by_client[self._counted] -= 1
                if not by_client[self._counted]:
                    del by_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:
                self._arm()  # a new request begins: it has the deadline to arrive whole
            super().data_received(data)
            if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
                self._disarm()  # arrived whole (or the connection is done with)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(deadline_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


__all__ = ["CONNECTIONS_PER_CLIENT", "NETWORK_CONNECTIONS", "REQUEST_DEADLINE_S", "guarded_h11"]

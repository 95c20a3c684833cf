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

Under HTTPS the TLS handshake is done here too (``loop.start_tls``), after the caps and
within the deadline: left to uvicorn, a connection would be counted only once its
handshake completed, and asyncio holds a silent one for 60 s, so one address could take
every file descriptor of the service with connections that never say hello.

There is no server-wide concurrency limit any more: what a connection can hold open for
long (a live stream) is capped by ``limits.StreamSlots``.
"""

from __future__ import annotations

import asyncio
import ssl
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


def guarded_h11(
    tls: ssl.SSLContext | None = None, deadline_s: float = REQUEST_DEADLINE_S
) -> type[H11Protocol]:
    """An h11 protocol class for one server (its own connection counts), speaking TLS with
    ``tls`` when given: the handshake is done here, after the caps, within the deadline."""
    by_client: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        """uvicorn's h11 protocol with the request deadline and the connection caps."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._counted: str | None = None
            self._serving = False  # uvicorn's side has the connection (TLS done if any)
            self._handshake: asyncio.Task[None] | None = None
            self._early = b""  # what the TLS layer handed on before start_tls returned

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if peer else ""
            if not is_kiosk(address):
                network = sum(by_client.values())
                if by_client[address] >= CONNECTIONS_PER_CLIENT or network >= NETWORK_CONNECTIONS:
                    if tls is None:
                        transport.write(_BUSY)
                    transport.close()
                    return
                by_client[address] += 1
                self._counted = address
            if tls is None:
                self._serve(transport)
                return
            transport.pause_reading()  # the ClientHello is for the TLS layer, not for h11
            self._handshake = self.loop.create_task(self._secure(transport))

        async def _secure(self, transport: asyncio.Transport) -> None:
            assert tls is not None
            try:
                secured = await self.loop.start_tls(
                    transport, self, tls, server_side=True, ssl_handshake_timeout=deadline_s
                )
            except OSError:  # failed or too slow: start_tls closed it, connection_lost follows
                return
            if secured is not None:
                self._serve(secured)

        def _serve(self, transport: asyncio.BaseTransport) -> None:
            self._serving = True
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()
            if self._early:
                early, self._early = self._early, b""
                self.data_received(early)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is not None:
                by_client[self._counted] -= 1
                if not by_client[self._counted]:
                    del by_client[self._counted]
                self._counted = None
            if self._serving:
                super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._serving:
                self._early += data
                return
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

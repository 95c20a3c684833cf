"""How many live streams the screens keep open, and for whom.

A stream holds a connection for as long as the page is open, so the places are few and
one pool for everyone let 32 anonymous ``/events/summary`` streams freeze the traveller
display and the agent station. The places are split:

* ``KIOSK_STREAMS`` kept for the traveller display of the unit's own screen
  (``settings.is_kiosk``: it connects from loopback);
* ``AGENT_STREAMS`` kept for signed-in agents (the station, their overview);
* ``max_streams`` shared by everyone else (and by the first two once theirs are taken),
  at most ``STREAMS_PER_CLIENT`` per client address, so one host cannot take them all.

Used from the server's event loop only (taken in a handler, given back when the stream
ends), so the counts need no lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

KIOSK_STREAMS = 4
AGENT_STREAMS = 16
STREAMS_PER_CLIENT = 8


@dataclass
class StreamSlots:
    """Places for live streams: reserved pools first, then the shared one."""

    shared: int
    reserved: dict[str, int] = field(
        default_factory=lambda: {"kiosk": KIOSK_STREAMS, "agents": AGENT_STREAMS}
    )
    per_client: int = STREAMS_PER_CLIENT
    _taken: Counter[str] = field(default_factory=Counter, init=False)
    _by_client: Counter[str] = field(default_factory=Counter, init=False)

    def take(self, client: str, pool: str | None = None) -> Callable[[], None] | str:
        """A place for a stream of ``client``: the function that gives it back, or the
        reason there is none (``too_many_streams``, ``too_many_streams_client``)."""
        if pool is not None and self._taken[pool] < self.reserved[pool]:
            return self._hold(pool, None)
        if self._by_client[client] >= self.per_client:
            return "too_many_streams_client"
        if self._taken["shared"] >= self.shared:
            return "too_many_streams"
        return self._hold("shared", client)

    def _hold(self, pool: str, client: str | None) -> Callable[[], None]:
        self._taken[pool] += 1
        if client is not None:
            self._by_client[client] += 1

        def give_back() -> None:
            self._taken[pool] -= 1
            if client is not None:
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]

        return give_back


__all__ = ["AGENT_STREAMS", "KIOSK_STREAMS", "STREAMS_PER_CLIENT", "StreamSlots"]

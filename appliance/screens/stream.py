"""Server-sent events from a :class:`~appliance.screens.board.LaneBoard`, latest state only.

Hand-rolled on Starlette's ``StreamingResponse`` rather than a plugin: the stream must
end the moment the board closes (a plugin's streams wait for a signal handler that a
server running in a thread never gets, and the service would hang on stop). Each event
is the whole view (``event: state``, ``id:`` the board's sequence); a comment every
``keepalive_s`` notices a page that went away. States a slow page could not take are
skipped, never queued.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse

from appliance.screens.board import LaneBoard

KEEPALIVE_S = 15.0
RETRY_MS = 2000


def _event(seq: int, view: dict) -> str:
    data = json.dumps(view, separators=(",", ":"), ensure_ascii=True)
    return f"id: {seq}\nevent: state\ndata: {data}\n\n"


def event_stream(
    board: LaneBoard,
    fields: tuple[str, ...],
    *,
    on_close: Callable[[], None],
    headers: dict[str, str] | None = None,
    keepalive_s: float = KEEPALIVE_S,
) -> StreamingResponse:
    """The stream of ``fields`` of ``board``; ``on_close`` runs when it ends, however."""

    async def events() -> AsyncIterator[str]:
        try:
            seq, view = board.snapshot(fields)
            yield f"retry: {RETRY_MS}\n\n"
            yield _event(seq, view)
            while not board.closed:
                newer = await board.wait_newer(seq, fields, keepalive_s)
                if board.closed:
                    break
                if newer is None:
                    yield ": keepalive\n\n"
                    continue
                seq, view = newer
                yield _event(seq, view)
        finally:
            on_close()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
    )


__all__ = ["KEEPALIVE_S", "RETRY_MS", "event_stream"]

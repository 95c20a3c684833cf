"""Which capture the code running now works on, for every log line it writes.

The pipeline wraps one traveller's transaction in :func:`capture_context`; the journal
handler (``appliance.service.journal``) adds ``CAPTURE_ID`` to each record logged inside,
so ``journalctl CAPTURE_ID=...`` follows one capture from first frame to purge.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_capture: contextvars.ContextVar[str] = contextvars.ContextVar("gate_capture_id", default="")


@contextlib.contextmanager
def capture_context(capture_id: str) -> Iterator[None]:
    """Records logged inside carry ``CAPTURE_ID=capture_id`` (this thread/context only)."""
    token = _capture.set(capture_id)
    try:
        yield
    finally:
        _capture.reset(token)


def current_capture() -> str:
    """The capture id of the enclosing :func:`capture_context`, or ""."""
    return _capture.get()


__all__ = ["capture_context", "current_capture"]

"""Shutdown signals as an exception, held back while a purge or a ledger append runs.

``install_shutdown_handler`` turns SIGTERM (and SIGINT) into ``ShutdownRequested`` raised
in the main thread, so a transaction is interrupted where it stands and its ``except
BaseException`` path purges it. ``deferred_shutdown`` holds the signal back while a purge
or a ledger append runs, so neither is cut in half.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


class ShutdownRequested(BaseException):
    """The service was told to stop (SIGTERM/SIGINT) while it was working."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"shutdown requested by {signal.Signals(signum).name}")
        self.signum = signum


_defer_depth = 0


_pending: int | None = None


def _raise_shutdown(signum: int, _frame: object) -> None:
    global _pending
    if _defer_depth:
        _pending = signum  # raised when the purge or ledger append in progress is done
        return
    raise ShutdownRequested(signum)


@contextlib.contextmanager
def deferred_shutdown() -> Iterator[None]:
    """Hold a shutdown signal back until the block (a purge, a ledger append) is done.

    Signal handlers run in the main thread only, so other threads pass straight through.
    """
    global _defer_depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
        if _defer_depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise ShutdownRequested(signum)


def install_shutdown_handler(
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
    on_signal: Callable[[int], None] | None = None,
) -> Callable[[], None]:
    """Make ``signals`` raise ``ShutdownRequested`` in the main thread; returns a restorer.

    ``on_signal`` (e.g. a stop event's ``set``) runs first, so a loop between
    transactions also learns of the stop. Only the main thread can install handlers;
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        if on_signal is not None:
            on_signal(signum)
        _raise_shutdown(signum, frame)

    previous = {signum: signal.signal(signum, handler) for signum in signals}

    def restore() -> None:
        global _pending
        _pending = None  # a signal held back for a handler that is gone now is dropped
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, old)  # type: ignore[arg-type]

    return restore


__all__ = ["ShutdownRequested", "deferred_shutdown", "install_shutdown_handler"]

"""Process hardening: no core dumps, safe shutdown mid-transaction, logs without image bytes.

- ``harden_process`` sets ``RLIMIT_CORE`` to 0 and marks the process not dumpable
  (``prctl(PR_SET_DUMPABLE, 0)``, Linux), so neither a crash nor ``ptrace``/``gcore`` by
  another user can pull a frame out of memory. Failures are tolerated and reported.
- ``install_shutdown_handler`` turns SIGTERM (and SIGINT) into ``ShutdownRequested``
  raised in the main thread, so a transaction is interrupted where it stands and its
  ``except BaseException`` path purges it. ``deferred_shutdown`` holds the signal back
  while a purge or a ledger append runs, so neither is cut in half.
- ``ImageDataFilter`` refuses log records that carry binary buffers (bytes, bytearray,
  memoryview, numpy arrays), JPEG/PNG signatures or long base64-looking runs;
  ``install_log_filters`` attaches it to every handler of the root logger.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger("gate.hardening")

PR_SET_DUMPABLE = 4


class ShutdownRequested(BaseException):
    """The service was told to stop (SIGTERM/SIGINT) while it was working."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"shutdown requested by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class HardeningReport:
    core_dumps_disabled: bool = False
    not_dumpable: bool = False
    problems: list[str] = field(default_factory=list)


def harden_process() -> HardeningReport:
    """RLIMIT_CORE = 0 and PR_SET_DUMPABLE = 0 where the platform has them; never raises."""
    report = HardeningReport()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        report.core_dumps_disabled = True
    except (ImportError, OSError, ValueError) as exc:
        report.problems.append(f"RLIMIT_CORE: {exc}")
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
                report.not_dumpable = True
            else:
                report.problems.append(f"prctl(PR_SET_DUMPABLE): errno {ctypes.get_errno()}")
        except (OSError, AttributeError) as exc:
            report.problems.append(f"prctl(PR_SET_DUMPABLE): {exc}")
    else:
        report.problems.append(f"PR_SET_DUMPABLE: not available on {sys.platform}")
    for problem in report.problems:
        log.warning("process hardening: %s", problem)
    return report


def is_dumpable() -> bool | None:
    """The process's dumpable flag (Linux), None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
    except (OSError, AttributeError):
        return None


# --- shutdown ---------------------------------------------------------------------------

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
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, old)  # type: ignore[arg-type]

    return restore


# --- logs ---------------------------------------------------------------------------------

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"/9j/", b"iVBORw0KGgo")
_MAGIC_TEXT = ("\xff\xd8\xff", "\x89PNG", "\\xff\\xd8\\xff", "\\x89PNG", "/9j/", "iVBORw0KGgo")
# A run of base64 alphabet this long is a blob, not an id (UUIDs have hyphens, hashes are
# 64 hex digits, well under the limit).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{160,}")
MAX_MESSAGE_CHARS = 8192


def _is_binary(value: object) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    module = type(value).__module__ or ""
    return module.startswith("numpy") and hasattr(value, "nbytes") and hasattr(value, "dtype")


def looks_like_image_text(text: str) -> bool:
    """True if ``text`` holds an image signature (raw or escaped) or a long base64 run."""
    return any(m in text for m in _MAGIC_TEXT) or _BASE64_RUN.search(text) is not None


class ImageDataFilter(logging.Filter):
    """Refuse log records that could carry image bytes; log one line saying so instead.

    A refused record is rewritten, not dropped silently: its message becomes
    ``"<log record withheld: ...>"`` with no arguments and no exception text, so the
    operator still sees that something was logged and where.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        reason = self._reason(record)
        if reason is not None:
            record.msg = f"<log record withheld: {reason}> (at {record.pathname}:{record.lineno})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True

    @staticmethod
    def _reason(record: logging.LogRecord) -> str | None:
        args = record.args
        values: list[object] = [record.msg]
        if isinstance(args, dict):
            values.extend(args.values())
        elif isinstance(args, tuple):
            values.extend(args)
        elif args is not None:
            values.append(args)
        for value in values:
            if _is_binary(value):
                return f"binary field ({type(value).__name__})"
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return None
        if len(message) > MAX_MESSAGE_CHARS:
            return f"message of {len(message)} characters"
        if looks_like_image_text(message):
            return "image signature or base64 blob"
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if looks_like_image_text(text) or len(text) > MAX_MESSAGE_CHARS:
                return "exception text with image-like data"
        return None


def install_log_filters(logger: logging.Logger | None = None) -> ImageDataFilter:
    """Attach one ``ImageDataFilter`` to every handler of ``logger`` (default: root).

    Handler filters see records from every logger that propagates to them, which a
    logger-level filter would not. Call after logging is configured.
    """
    target = logger or logging.getLogger()
    image_filter = ImageDataFilter()
    for handler in target.handlers:
        if not any(isinstance(f, ImageDataFilter) for f in handler.filters):
            handler.addFilter(image_filter)
    return image_filter


def _reset_for_tests() -> None:
    global _defer_depth, _pending
    _defer_depth, _pending = 0, None

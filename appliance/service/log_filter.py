"""Logs never carry image bytes: a filter on every handler withholds binary buffers,
JPEG/PNG signatures and long base64 runs, and says where such a record came from."""

from __future__ import annotations

import logging
import re

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


__all__ = ["MAX_MESSAGE_CHARS", "ImageDataFilter", "install_log_filters", "looks_like_image_text"]

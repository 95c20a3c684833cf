"""Set-up stays quiet: a model converter's chatter (tflite2onnx's log lines and float16
warnings, anything it writes to fd 1/2) is swallowed, and replayed only if it fails."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_converter():
    """Swallow tflite2onnx's log and anything written to fd 1/2; replay it on failure."""
    logger = logging.getLogger("tflite2onnx")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[1], 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace")[-4000:])
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            logger.setLevel(level)
            logger.propagate = propagate


__all__ = ["quiet_converter"]

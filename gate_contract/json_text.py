"""JSON read from files and folders others write (ledgers, queues, registries, manifests,
scene folders), with one failure for every way the text can be wrong.

``json.loads`` raises ``RecursionError``, not ``ValueError``, for arrays or objects nested
a few thousand deep: one line of ``[[[[…`` in a file became a traceback and a failed
start instead of the reader's own "unreadable" path.
"""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)``; raises ``ValueError`` (never ``RecursionError``) when the text
    is not JSON or is nested too deeply to parse."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply to read") from exc


__all__ = ["parse_json"]

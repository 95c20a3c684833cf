"""JSON and TOML read from files and folders others write (ledgers, queues, registries,
manifests, configuration, scene folders), with one failure for every way the text can be
wrong.

``json.loads`` and ``tomllib.loads`` raise ``RecursionError``, not ``ValueError``, for
arrays or tables nested a few thousand deep: one line of ``[[[[…`` in a file became a
traceback and a failed start instead of the reader's own "unreadable" path.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any


class NestedTooDeeply(ValueError):
    """The text nests arrays or tables deeper than the parser can follow."""


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)``; raises ``ValueError`` (never ``RecursionError``) when the text
    is not JSON or is nested too deeply to parse."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise NestedTooDeeply("JSON nested too deeply to read") from exc


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``; raises ``tomllib.TOMLDecodeError`` for text that is not
    TOML and :class:`NestedTooDeeply` (both ``ValueError``) for nesting it cannot follow."""
    try:
        return tomllib.loads(text)
    except RecursionError as exc:
        raise NestedTooDeeply("TOML nested too deeply to read") from exc


__all__ = ["NestedTooDeeply", "parse_json", "parse_toml"]

"""Progress bars of the long commands of both programs (benches, ``gatectl simulate``,
``gate-matcher enroll`` and ``calibrate``), for the person at a terminal only.

A bar is drawn on stderr, and only when stderr is a terminal and the command was not
asked for ``--json``: a piped, captured or CI run, and every line on stdout, stay exactly
as they were. Code called as a library (tests, other programs) is given :data:`SILENT`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass(frozen=True)
class Progress:
    """Whether a command draws progress bars; :meth:`bar` makes them (no-ops when not)."""

    shown: bool = False

    @classmethod
    def for_command(cls, *, as_json: bool) -> Progress:
        """The rule, for a command a person runs: bars on a terminal's stderr, none with
        ``--json``."""
        return cls(shown=not as_json and sys.stderr.isatty())

    def bar(self, description: str, total: float | None = None, unit: str = "it") -> tqdm:
        """A bar on stderr (use it as a context manager; ``update(n)`` advances it),
        cleared when it closes so the command's own output is what stays on screen."""
        return self._tqdm(desc=description, total=total, unit=unit)

    def timed(self, description: str, seconds: float) -> tqdm:
        """A bar for a run of a fixed length: ``update`` it with the seconds gone by; it
        shows the time run against ``seconds`` (and any postfix, e.g. a count so far)."""
        from tqdm import tqdm

        length = tqdm.format_interval(seconds)
        return self._tqdm(
            desc=description,
            total=seconds,
            bar_format="{l_bar}{bar}| {elapsed} of " + length + "{postfix}",
        )

    def _tqdm(self, **options: Any) -> tqdm:
        from tqdm import tqdm  # here, not at import: every CLI start would pay for it

        return tqdm(
            file=sys.stderr, disable=not self.shown, leave=False, dynamic_ncols=True, **options
        )

    def write(self, line: str) -> None:
        """``line`` on stdout, flushed, without tearing a bar drawn on the terminal."""
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


SILENT = Progress()


__all__ = ["SILENT", "Progress"]

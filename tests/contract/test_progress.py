"""The one rule for progress bars: on a terminal's stderr, never with --json, and a bar
that is not shown writes nothing at all."""

from __future__ import annotations

import io
import sys

import pytest

from gate_contract.progress import SILENT, Progress


@pytest.mark.parametrize(
    ("terminal", "as_json", "shown"),
    [(True, False, True), (True, True, False), (False, False, False), (False, True, False)],
)
def test_bars_only_on_a_terminal_and_never_with_json(monkeypatch, terminal, as_json, shown):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert Progress.for_command(as_json=as_json).shown is shown


def test_a_bar_not_shown_writes_nothing(monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with SILENT.bar("scenes", total=3) as bar:
        bar.update(3)
    assert stderr.getvalue() == ""
    with Progress(shown=True).bar("scenes", total=3) as bar:
        bar.update(3)
    assert "scenes:" in stderr.getvalue() and "/3 [" in stderr.getvalue()

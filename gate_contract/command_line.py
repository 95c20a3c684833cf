"""The argument parser both programs' command lines (``gatectl``, ``gate-matcher``) build on.

A technician reads ``--help`` to learn what an option takes and what happens without it,
so every option's default is printed. Subcommands inherit the parser class (argparse
creates each subparser with its parent's class), so the commands other packages plug in
get the same help without being told.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to each option's help. A default of None means "not
    given": what happens then is for the help text to say, not for a bare ``None``.
    Lines are never broken inside a word, so a path or a host name can be copied whole."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(
            " ".join(text.split()), width, break_on_hyphens=False, break_long_words=False
        )


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose help, and every subcommand's, shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def finite_number(text: str) -> float:
    """An option type for a signed quantity (stops of exposure, say): any finite number."""
    return _finite(text)


def positive_number(text: str) -> float:
    """An option type for durations, rates and sizes: finite and above zero. ``nan`` and
    ``inf`` parse as floats, and became a bench that never ends or a deadline of NaN."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text!r}")
    return value


def non_negative_number(text: str) -> float:
    """An option type for margins and floors that may be zero: finite and at least 0."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def share(text: str) -> float:
    """An option type for a share of a whole: finite, from 0 to 1."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text!r}")
    return value


__all__ = [
    "ArgumentParser",
    "HelpFormatter",
    "finite_number",
    "non_negative_number",
    "positive_number",
    "share",
]

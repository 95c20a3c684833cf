"""The argument parser both programs' command lines (``gatectl``, ``gate-matcher``) build on.

A technician reads ``--help`` to learn what an option takes and what happens without it,
so every option's default is printed. Subcommands inherit the parser class (argparse
creates each subparser with its parent's class), so the commands other packages plug in
get the same help without being told.
"""

from __future__ import annotations

import argparse
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


__all__ = ["ArgumentParser", "HelpFormatter"]

"""Every option of ``gatectl`` and ``gate-matcher`` (testbed's plugged-in commands
included) says in ``--help`` what it takes and what its default is.

The parsers are walked through their subparser actions, so a command added anywhere,
by either program or by a plugin, is checked; the defaults are read from each
subcommand's real help output, as a technician sees it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from appliance.ops.cli import build_parser as gatectl_parser
from matching_service.cli import build_parser as gate_matcher_parser
from tests.support import REPO, console_script

NOT_CHECKED = (argparse._HelpAction, argparse._VersionAction)
OPTION_LINE = re.compile(r"^ {2}(-{1,2}[A-Za-z0-9][\w-]*)")


def _commands(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``gatectl bench capture``, its parser) for the program and every subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, f"{path} {name}")


def _every_command() -> list[tuple[str, argparse.ArgumentParser]]:
    return [
        *_commands(gatectl_parser(), "gatectl"),
        *_commands(gate_matcher_parser(), "gate-matcher"),
    ]


def _option_help(help_text: str) -> dict[str, str]:
    """First option string -> its whole entry in ``--help`` (invocation and help, joined)."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        option = OPTION_LINE.match(line)
        if option:
            current = option.group(1)
            entries[current] = line.strip()
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, NOT_CHECKED)]


COMMANDS = _every_command()


def test_the_walk_reaches_nested_and_plugged_in_commands():
    names = {name for name, _ in COMMANDS}
    for expected in ("gatectl bench capture", "gatectl flight set", "gatectl agents sign",
                     "gatectl firmware deploy", "gate-matcher gallery delete",
                     "gate-matcher bench", "gate-matcher serve"):  # fmt: skip
        assert expected in names
    assert len(names) > 40


@pytest.mark.parametrize(("command", "parser"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_says_what_it_takes_and_its_default(command, parser):
    entries = _option_help(parser.format_help())
    for action in _options(parser):
        flag = action.option_strings[0]
        assert action.help, f"{command} {flag} has no help"
        if action.nargs != 0:  # it takes a value: the help names what kind
            assert action.metavar is not None or action.choices is not None, (
                f"{command} {flag} takes a value but does not say what (no metavar)"
            )
        entry = entries[flag]
        if action.default is not None and action.default is not argparse.SUPPRESS:
            assert "(default:" in entry, f"{command} {flag} does not show its default: {entry}"


def test_the_real_help_of_a_few_commands(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GATE_CONFIG"} | {"COLUMNS": "100"}

    def helped(program: str, *args: str) -> str:
        result = subprocess.run(
            [str(console_script(program)), *args, "--help"],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False,
        )  # fmt: skip
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return " ".join(result.stdout.split())

    selftest = helped("gatectl", "selftest")
    assert "--config FILE" in selftest and "(default: /etc/gate-appliance/gate.toml)" in selftest
    assert "--min-free-mb MB" in selftest and "(default: 200.0)" in selftest
    serve = helped("gate-matcher", "serve")
    assert "--address HOST:PORT" in serve and "(default: 127.0.0.1:50051)" in serve
    assert "--retention-interval SECONDS" in serve and "(default: 300.0)" in serve
    capture = helped("gatectl", "bench", "capture")
    assert "--scenes DIR" in capture and "--steady-frames N" in capture
    assert "{onnxruntime,litert,mediapipe}" in capture and "(default: litert)" in capture
    enroll = helped("gate-matcher", "enroll")
    assert "--flight CARRIER NUMBER DATE AIRPORT" in enroll


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_no_option_takes_a_number_that_is_not_finite(text: str) -> None:
    """``float("nan")`` and ``float("inf")`` parse: ``bench load --duration nan`` ended
    in a traceback (a gRPC deadline of NaN), ``--duration inf`` in a bench that never
    ends. Every option that takes a number refuses them in one usage line."""
    numeric = 0
    for path, parser in _every_command():
        for action in parser._actions:
            if not action.option_strings or action.type is None:
                continue
            assert action.type is not float, f"{path} {action.option_strings[0]}: bare float"
            if action.type in (int, str) or isinstance(action.type, argparse.FileType):
                continue
            try:
                value = action.type(text)
            except (argparse.ArgumentTypeError, ValueError):
                numeric += 1
                continue
            assert not isinstance(value, float), f"{path} {action.option_strings[0]}: {text}"
    assert numeric >= 14, "the options that take a number were found"

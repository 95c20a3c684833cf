"""The example configuration documents every section and key the loader reads, and every
value it shows, commented out or not, is one the loader accepts.

What the loader reads is observed on the loader itself: each section it checks records
the keys it asked for (``_Section.known``, the table behind "unknown key ... did you
mean"), so a key added to the code and not to the example fails here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from appliance.service import config as config_module
from appliance.service.config import SECTIONS, load_config
from gate_contract.files import write_private
from tests.support import REPO

EXAMPLE = REPO / "systemd" / "gate-appliance.toml.example"
HEADER = re.compile(r"^(?:# ?)?\[(\w+)\]\s*(?:#.*)?$")
# `key = value`, or the same commented out (`# key = value  # what it is`); prose
# comments never start with a lower-case word followed by " = ".
KEY_LINE = re.compile(r"^(# ?)?([a-z_][a-z0-9_]*) = ")


def _documented(text: str) -> dict[str, set[str]]:
    """Section -> keys the example shows, set or commented out."""
    found: dict[str, set[str]] = {}
    section = None
    for line in text.splitlines():
        header = HEADER.match(line)
        if header:
            section = header.group(1)
            found.setdefault(section, set())
            continue
        key = KEY_LINE.match(line)
        if key and section is not None:
            found[section].add(key.group(2))
    return found


def _uncommented(text: str) -> str:
    """The example with every commented-out `# key = value` line made a setting."""
    return "\n".join(
        line[2:] if line.startswith("# ") and KEY_LINE.match(line) else line
        for line in text.splitlines()
    )


def _with_relay_key(folder: Path, text: str) -> Path:
    path = folder / "gate.toml"
    path.write_text(text)
    write_private(folder / "relay.key", ("00" * 24 + "\n").encode())
    return path


def _keys_read(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Section -> every key the real loader asks for while it loads ``path``."""
    read: dict[str, set[str]] = {}
    finish = config_module._Section.finish

    def recording_finish(section) -> None:
        read.setdefault(section.name, set()).update(section.known)
        finish(section)

    monkeypatch.setattr(config_module._Section, "finish", recording_finish)
    load_config(path)
    return read


def test_every_section_and_key_the_loader_reads_is_in_the_example(tmp_path, monkeypatch):
    text = EXAMPLE.read_text()
    documented = _documented(text)
    assert set(SECTIONS) <= set(documented), set(SECTIONS) - set(documented)
    read = _keys_read(_with_relay_key(tmp_path, _uncommented(text)), monkeypatch)
    assert set(read) == set(SECTIONS)  # every section was loaded, the optional ones too
    missing = {s: sorted(keys - documented[s]) for s, keys in read.items() if keys - documented[s]}
    assert missing == {}, f"keys the loader reads that the example does not show: {missing}"


def test_the_example_loads_as_shipped_and_with_every_key_uncommented(tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(EXAMPLE, shipped / "gate.toml")
    write_private(shipped / "relay.key", ("00" * 24 + "\n").encode())
    assert load_config(shipped / "gate.toml").device_id == "gate-dev-0001"

    everything = tmp_path / "everything"
    everything.mkdir()
    config = load_config(_with_relay_key(everything, _uncommented(EXAMPLE.read_text())))
    # the commented-out keys took effect (they are real keys with values it accepts)
    assert config.camera.repeat == 1
    assert config.matcher.enroll_target == "matcher.example.internal:50052"
    assert config.vision.models_dir == Path("/var/lib/gate-appliance/models")
    assert config.screens is not None and config.screens.server_names
    assert config.data_dir == Path("/var/lib/gate-appliance")


def test_the_parser_of_this_test_sees_commented_keys_and_no_prose():
    sample = "[a]\nx = 1\n# y = 2   # what y is\n# Prose = not a key\n# z is ok\n# [b]\n# w = 3\n"
    assert _documented(sample) == {"a": {"x", "y"}, "b": {"w"}}
    assert _uncommented(sample).splitlines()[2] == "y = 2   # what y is"

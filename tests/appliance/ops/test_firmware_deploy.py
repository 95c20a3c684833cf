"""`gatectl firmware deploy` against a fake mpremote (what it asks for, in what order,
with which files) and against an emulated Pico that the real mpremote talks to."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.ops import cli
from appliance.ops.firmware_deploy import (
    EARLIEST_PLAUSIBLE_CLOCK,
    Deployer,
    FirmwareDeployError,
    check_greeting,
    epoch_floor,
)
from firmware_bridge.mcu.pico_main import COUNTER_LOCKED, PIN_RELAY, PIN_SERVICE, CounterStore
from firmware_bridge.simulator import Simulator
from testbed.emulated_pico import EmulatedPico

FAKE = Path(__file__).with_name("fake_mpremote.py")
KEY = bytes(range(100, 132))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "relay.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "mpremote.jsonl"
    monkeypatch.setenv("FAKE_MPREMOTE_LOG", str(log))
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def deploy_cli(key_file: Path, *extra: str) -> int:
    mpremote = f"{sys.executable} {FAKE}"
    args = ["firmware", "deploy", "--port", "/dev/ttyNOPE", "--key-file", str(key_file)]
    return cli.main([*args, "--mpremote", mpremote, "--verify-timeout", "0.5", *extra])


# ------------------------------------------------------------------- fake mpremote


def test_dry_run_builds_and_shows_but_touches_nothing(
    key_file: Path, fake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy_cli(key_file, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "pico_main.mpy" in out and "relay counter: new epoch max(the board's + 1" in out
    assert "dry run: nothing was sent to the board" in out
    assert KEY.hex() not in out
    assert calls(fake) == []


def test_one_session_in_a_safe_order_and_the_key_never_on_a_command_line(
    key_file: Path, fake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = int(time.time())
    # No board answers on /dev/ttyNOPE: the deploy must say so after the copy.
    assert deploy_cli(key_file) == 1
    assert "did not answer the gate protocol on /dev/ttyNOPE" in capsys.readouterr().err
    (call,) = calls(fake)
    argv = call["argv"]
    assert argv[:2] == ["connect", "/dev/ttyNOPE"]
    assert all(KEY.hex() not in word for word in argv)
    steps = " ".join(w if w != "+" else "\x00" for w in argv).split(" \x00 ")  # at mpremote's +
    assert steps[0].startswith("connect /dev/ttyNOPE exec") and "_rm('/main.py')" in steps[0]
    assert steps[-1] == "reset"
    assert steps[-2].endswith(":/main.py")  # the entry point only once all else is there
    counter_step = next(i for i, s in enumerate(steps) if "CounterStore" in s)
    key_step = next(i for i, s in enumerate(steps) if s.endswith(":/gate_key.hex"))
    module_steps = [i for i, s in enumerate(steps) if s.endswith(".mpy")]
    assert len(module_steps) == 5 and max(module_steps) < counter_step < len(steps) - 2
    assert key_step < counter_step
    floor = int(steps[counter_step].split("_held[0] + 1, ")[1].split(")")[0])  # the epoch
    assert before <= floor <= int(time.time())
    copied_key = call["copies"][":/gate_key.hex"]
    assert bytes.fromhex(copied_key["hex"]).decode().strip() == KEY.hex()
    assert copied_key["mode"] == 0o600
    staged = Path(argv[argv.index(":/gate_key.hex") - 1])
    assert not staged.exists() and not staged.parent.exists()  # gone after the session
    if Path("/dev/shm").is_dir():
        assert str(staged).startswith("/dev/shm/")  # in memory, never on a disk
    main_py = bytes.fromhex(call["copies"][":/main.py"]["hex"]).decode()
    assert "main(transport='usb')" in main_py


def test_a_wedged_board_times_out_and_says_what_to_do(
    key_file: Path, fake: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("FAKE_MPREMOTE_MODE", "hang")
    assert deploy_cli(key_file, "--timeout", "1") == 1
    err = capsys.readouterr().err
    assert "did not finish the deploy within 1 s" in err and "SERVICE jumper" in err
    (call,) = calls(fake)
    with pytest.raises(ProcessLookupError):  # mpremote's process group was ended
        os.kill(call["pid"], 0)


def test_mpremote_failing_is_reported_with_its_words(
    key_file: Path, fake: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("FAKE_MPREMOTE_MODE", "fail")
    assert deploy_cli(key_file) == 1
    err = capsys.readouterr().err
    assert "mpremote failed on /dev/ttyNOPE (exit 1)" in err
    assert "could not enter raw repl" in err and "without /main.py" in err


def test_bad_inputs_get_one_clear_error(tmp_path: Path, fake: Path, capsys) -> None:
    short = tmp_path / "short.key"
    short.write_text("abcd")
    assert deploy_cli(short) == 2
    assert "--key-file" in capsys.readouterr().err
    not_hex = tmp_path / "bad.key"
    not_hex.write_text("zz" * 32)
    assert deploy_cli(not_hex) == 2
    good = tmp_path / "good.key"
    good.write_text(KEY.hex())
    assert deploy_cli(good, "--transport", "uart") == 1
    assert "--link-port" in capsys.readouterr().err
    assert (
        cli.main(
            ["firmware", "deploy", "--port", "/dev/x", "--key-file", str(good), "--mpremote", "/no"]
        )
        == 1
    )
    assert "cannot run mpremote" in capsys.readouterr().err
    assert calls(fake) == []


def test_epoch_floor_needs_a_set_clock() -> None:
    assert epoch_floor(EARLIEST_PLAUSIBLE_CLOCK + 5.7) == EARLIEST_PLAUSIBLE_CLOCK + 5
    with pytest.raises(FirmwareDeployError, match="set the time"):
        epoch_floor(86_400.0)  # 1970-01-02: a Pi that has not synced its clock


def test_greeting_check_tells_a_wrong_key_and_a_wrong_counter() -> None:
    with Simulator(KEY) as board:
        greeting = check_greeting(board.port, KEY, 0, timeout_s=5)
        assert greeting["key_probe"] == "REJECTED_STALE" and not greeting["relay_open"]
        with pytest.raises(FirmwareDeployError, match="different relay key"):
            check_greeting(board.port, bytes(32), 0, timeout_s=5)
        with pytest.raises(FirmwareDeployError, match="epoch 0 at 0, not the epoch 7"):
            check_greeting(board.port, KEY, 7, timeout_s=5)
        assert board.relay_history == []  # no probe opened the relay


# ------------------------------------------------------------ emulated Pico, real mpremote


@pytest.fixture
def pico(tmp_path: Path) -> Iterator[EmulatedPico]:
    with EmulatedPico(tmp_path / "flash") as board:
        yield board


def deploy(board: EmulatedPico, **kw: float) -> dict:
    options = {"verify_timeout_s": 20.0, **kw}
    return Deployer(board.port, KEY, out=lambda _line: None, **options).run().as_dict()


@pytest.mark.micropython
@pytest.mark.parametrize("held", [(4_000_000_000, 0xFFFFFFFE), "locked"])
def test_a_deploy_starts_a_new_epoch_above_the_boards(
    tmp_path: Path, held: tuple[int, int] | str
) -> None:
    """Whatever the board held (an epoch ahead of the clock with its counter at the end,
    or a store too torn to read) it gets a new epoch above it, counter 0: no earlier
    pulse verifies again, and the used-up or locked counter is recovered."""
    flash = tmp_path / "flash"
    flash.mkdir()
    store = CounterStore(str(flash) + "/")
    if held == "locked":  # both slots torn: the board refuses every pulse
        for slot in store.paths:
            Path(slot).write_bytes(b"GC2torn")
        assert store.load() == COUNTER_LOCKED
    else:
        store.load()
        store.store(*held)
        store.store(*held)
    with EmulatedPico(flash) as board:
        result = deploy(board)
    if held == "locked":
        assert result["counter_before"] == "locked" and result["epoch"] <= int(time.time())
        assert result["epoch"] >= int(time.time()) - 60
    else:
        assert result["epoch"] == held[0] + 1 and result["counter_before"] == f"{held[0]}/{held[1]}"
    assert CounterStore(str(flash) + "/").load() == (result["epoch"], 0)
    assert result["greeting"]["epoch"] == result["epoch"]


@pytest.mark.micropython
def test_deploy_then_redeploy_through_the_service_jumper(pico: EmulatedPico) -> None:
    """A fresh board gets the firmware and the key, answers the greeting, and the relay
    is never driven high. Then the running firmware (USB transport, kbd_intr(-1): 0x03
    is frame data) locks mpremote out, so a second deploy gives up at its timeout; the
    SERVICE jumper gets the REPL back and the counter is not lowered."""
    before = int(time.time())
    first = deploy(pico)
    flash = pico.flash_dir
    assert sorted(str(p.relative_to(flash)) for p in flash.rglob("*") if p.is_file()) == [
        "firmware_bridge/__init__.mpy",
        "firmware_bridge/mcu/__init__.mpy",
        "firmware_bridge/mcu/firmware.mpy",
        "firmware_bridge/mcu/pico_main.mpy",
        "firmware_bridge/protocol.mpy",
        "gate_ctr.a",
        "gate_ctr.b",
        "gate_key.hex",
        "main.py",
    ]
    assert (flash / "gate_key.hex").read_text().strip() == KEY.hex()
    assert first["counter_before"] == "0/0" and first["epoch"] >= before
    assert CounterStore(str(flash) + "/").load() == (first["epoch"], 0)
    greeting = first["greeting"]
    assert greeting["key_probe"] == "REJECTED_STALE"
    assert greeting["epoch"] == first["epoch"] and greeting["last_counter"] == 0
    assert not greeting["relay_open"]

    with pytest.raises(FirmwareDeployError, match="SERVICE jumper"):
        deploy(pico, mpremote_timeout_s=3.0)
    pico.set_inputs({PIN_SERVICE: 0})
    reads = pico.input_reads(PIN_SERVICE)
    pico.power_cycle()  # the jumper is read at power-up ...
    assert pico.wait_for_input_read(PIN_SERVICE, after=reads)
    pico.set_inputs({})  # ... so it can come off before the deploy resets the board
    second = deploy(pico)
    assert second["counter_before"] == f"{first['epoch']}/0"
    assert second["epoch"] > first["epoch"]
    assert second["greeting"]["key_probe"] == "REJECTED_STALE"
    assert set(pico.output_history(PIN_RELAY)) == {0}  # the relay was never driven high

"""`gatectl flight set` changes the flight of the day of a running `gatectl run` (a real
process) without a restart; the new flight's session is opened, the old one dropped."""

from __future__ import annotations

import signal
import subprocess
import sys

from testbed.runs import wait_for
from tests.appliance.service.test_matcher_outage import (
    TIMEOUT,
    _config,
    _frames,
    _free_port,
    _matcher_on,
    _status,
    mcu,  # noqa: F401 (fixture)
)
from tests.support import REPO, gatectl


def test_flight_set_is_applied_by_the_running_service(
    tmp_path,
    matcher,
    encoder,
    demo_photos,
    mcu,  # noqa: F811
):
    simulator, key = mcu
    port = _free_port()
    config = _config(
        tmp_path, port, matcher.pki.root, simulator, key, _frames(tmp_path, demo_photos)
    )
    config_file = tmp_path / "gate.toml"
    service = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        text=True,
    )
    try:
        # The matcher is down: the service waits out of service and never uses up the
        # replay, so it is still running when the flight changes.
        assert wait_for(lambda: _status(config).get("service") == "serving", TIMEOUT)
        pid = service.pid
        assert _status(config)["pid"] == pid

        bad = gatectl("flight", "set", "--config", str(config_file), "--date", "2026-02-30")
        assert bad.returncode == 2 and "--date" in bad.stderr and "Traceback" not in bad.stderr

        result = gatectl(
            "flight", "set", "--config", str(config_file), "--number", "117", "--date", "2026-11-26"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert '+number = "117"' in result.stdout and '-number = "0283"' in result.stdout
        assert f"the gate service (pid {pid}) boards BA117" in result.stdout
        assert list(tmp_path.glob("gate.toml.bak-*"))
        assert _status(config)["flight"]["number"] == "117"
        assert service.poll() is None and _status(config)["pid"] == pid  # not restarted

        # The matcher comes up: the session opened is the new flight's (nobody enrolled).
        with _matcher_on(port, matcher, encoder):
            assert wait_for(lambda: _status(config)["session"]["open"], TIMEOUT), _status(config)
            assert _status(config)["session"]["gallery_size"] == 0
        assert gatectl("flight", "show", "--config", str(config_file)).stdout.startswith(
            "BA117 2026-11-26 from LAX"
        )
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=TIMEOUT)
    assert "reload: now boarding BA117" in err
    assert "flight gallery is EMPTY" in err


def test_flight_set_on_a_damaged_configuration_is_one_line_and_changes_nothing(tmp_path):
    """A TOML syntax error, a file that is not UTF-8, or tables thousands deep: one line
    naming the file, exit 2, and the file as it was (tomlkit's traceback before)."""
    config = tmp_path / "gate.toml"
    for damaged in (b"[flight\nnumber = ", b"\xff\xfe[flight]", b"a = " + b"[" * 50_000):
        config.write_bytes(damaged)
        result = gatectl("flight", "set", "--config", str(config), "--number", "123")
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"gatectl flight: {config} is not valid TOML")
        assert config.read_bytes() == damaged


def test_flight_set_when_flight_is_not_a_table_is_one_line(tmp_path):
    """``flight = 1`` instead of a ``[flight]`` table was an AttributeError traceback."""
    config = tmp_path / "gate.toml"
    config.write_text('flight = 1\n[device]\nid = "gate-1"\n')
    result = gatectl("flight", "set", "--config", str(config), "--number", "123")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"gatectl flight: {config}: flight must be a table ([flight]), not 1"
    )

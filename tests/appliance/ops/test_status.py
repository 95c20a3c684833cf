"""`gatectl status` tells the truth: a live service, a dead one, a stale file, a closed
pipe; real `gatectl` processes reading real status files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from appliance.service.status import write_status
from testbed.runs import wait_for
from tests.appliance.service.test_matcher_outage import (
    TIMEOUT,
    _config,
    _frames,
    _free_port,
    _serving,
    _status,
    mcu,  # noqa: F401 (fixture)
)
from tests.support import GRPC_CORE_LINE, REPO, gatectl


def test_a_serving_unit_is_probed_live_then_reported_stopped(
    tmp_path,
    matcher,
    demo_photos,
    mcu,  # noqa: F811
):
    simulator, key = mcu
    config = _config(
        tmp_path, _free_port(), matcher.pki.root, simulator, key, _frames(tmp_path, demo_photos)
    )
    config_file = str(tmp_path / "gate.toml")
    with _serving(config):
        assert wait_for(lambda: _status(config).get("service") == "serving", TIMEOUT)
        result = gatectl("status", "--config", config_file)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "now      SERVING for" in result.stdout
        # the matcher is down: the live probe says so (not the breaker's last opinion)
        assert "matcher  UNREACHABLE" in result.stdout
        assert not GRPC_CORE_LINE.search(result.stderr), result.stderr
        assert "cert     valid until" in result.stdout
        assert "session  not open" in result.stdout
        assert "ledger   durable;" in result.stdout and "purge receipts owed 0" in result.stdout
        report = json.loads(gatectl("status", "--config", config_file, "--json").stdout)
        assert report["checked"]["verdict"] == "serving" and report["checked"]["uptime_s"] >= 0
        assert report["version"] and report["pid"] == os.getpid()
    result = gatectl("status", "--config", config_file)
    assert result.returncode == 3 and "STOPPED" in result.stdout


def _write(path, **fields) -> None:
    status = {
        "device_id": "gate-dev-0001",
        "service": "serving",
        "state": "ready",
        "updated_at": "x",
        "updated_at_s": time.time(),
        "pid": os.getpid(),
    }
    status.update(fields)
    write_status(path, status)


def test_a_dead_service_or_a_stale_file_is_not_serving(tmp_path):
    path = tmp_path / "status.json"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    _write(path, pid=int(gone.stdout))  # a service killed with SIGKILL leaves this
    result = gatectl("status", "--status-file", str(path))
    assert result.returncode == 3 and "DEAD" in result.stdout and "not running" in result.stdout

    _write(path, updated_at_s=time.time() - 3600)  # alive (this pid) but silent for an hour
    result = gatectl("status", "--status-file", str(path), "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["checked"]["verdict"] == "stale"

    _write(path)
    assert gatectl("status", "--status-file", str(path)).returncode == 0


def test_json_is_printed_even_for_a_bad_config(tmp_path):
    bad = tmp_path / "gate.toml"
    bad.write_text("[device]\nid = 1\n")
    result = gatectl("status", "--config", str(bad), "--json")
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert "device.id" in json.loads(result.stdout)["checked"]["why"]


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    path = tmp_path / "status.json"
    _write(path, last_errors=[{"at": "t", "message": "x" * 100}] * 5)
    command = f"{sys.executable} -m appliance status --status-file {path} --watch 0.01 | head -c 10"
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr

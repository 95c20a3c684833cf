"""One gate service per unit: a second `gatectl run`, a selftest or a serial test on a
serving unit names the service that holds the port instead of stealing it.

The first service runs in this process (the matcher is down, so it stands by without
using up its replay camera); the others are real `gatectl` processes.
"""

from __future__ import annotations

import os

from appliance.ops.selftest import FAIL, check_serial
from appliance.service.instance import lock_holder
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
from tests.support import gatectl


def test_a_second_instance_selftest_and_serial_test_name_the_serving_service(
    tmp_path,
    matcher,
    demo_photos,
    mcu,  # noqa: F811
):
    from appliance.ops.selftest import Report

    simulator, key = mcu
    config = _config(
        tmp_path, _free_port(), matcher.pki.root, simulator, key, _frames(tmp_path, demo_photos)
    )
    config_file = tmp_path / "gate.toml"
    with _serving(config) as results:
        assert wait_for(lambda: _status(config).get("service") == "serving", TIMEOUT)
        assert lock_holder(config.lock_path) == {"pid": os.getpid(), "serial_port": simulator.port}

        second = gatectl("run", "--config", str(config_file))
        held = f"the gate service (pid {os.getpid()}) holds {simulator.port}; stop it first"
        assert second.returncode == 9, second.stderr
        assert held in second.stderr and "Traceback" not in second.stderr
        # the second instance (another pid) wrote nothing over the serving one's status
        status = _status(config)
        assert status["service"] == "serving" and status["pid"] == os.getpid()

        serial = gatectl("serial", "test", "--config", str(config_file))
        assert serial.returncode == 1 and held in serial.stderr, serial.stderr

        report = Report(str(config_file))
        check_serial(report, config, relay=False)
        assert report.get("serial").status == FAIL and held in report.get("serial").detail
        assert results == []
    # once it has stopped the lock is free (the kernel drops it with the process, too)
    assert lock_holder(config.lock_path) is None

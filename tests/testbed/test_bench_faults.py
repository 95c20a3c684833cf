"""The fault matrix as a test (``pytest -m faults``; CI runs it from ``.ci/run``).

Each row runs real processes (``gate-matcher serve``, the simulator, ``gatectl run``
under strace, a camera over HTTP) through ``testbed.bench.faults``: during the fault the
relay never opens, the service survives (or, for the rows that kill it, is restarted as
systemd would and picks up), no image reaches a file, the ledger verifies afterwards and
a grant comes back. The full-disk row needs root to mount a tmpfs and the clock row
Debian's libfaketime; each skips with the reason otherwise.
The slow rows (a 20 s partition, the camera's 5 s stream timeouts, the key changes and
their re-enrolment) are in ``gatectl bench faults``, not here; the matcher absent at
start (the service must not exit) and an MCU reboot mid-pulse are.
"""

from __future__ import annotations

import os
import shutil

import pytest

from testbed.bench.faults import FAULTS, MID_PULSE, PULSE_S, PULSE_SLACK_S, prepare
from testbed.native_writes import TraceUnavailable

pytestmark = pytest.mark.faults

CI_ROWS = [
    "matcher_absent_at_start",
    "mcu_reboot_mid_pulse",
    "ledger_full_filesystem",
    "appliance_sigkill_mid_verify",
    "appliance_sigterm_mid_verify",
    "matcher_sigstop_past_deadline",
    "matcher_sigkill_mid_verify",
    "clock_jump_back_mid_verify",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_photos):
    try:
        return prepare(tmp_path_factory.mktemp("faults"), demo_photos)
    except TraceUnavailable as exc:
        if os.environ.get("CI") == "true" and shutil.which("strace") is None:
            pytest.fail(f"CI installs strace for the fault matrix: {exc}")
        pytest.skip(f"fault matrix not run: {exc}")


def test_the_ci_rows_are_faults_of_the_matrix() -> None:
    assert set(CI_ROWS) <= set(FAULTS)


@pytest.mark.parametrize("name", CI_ROWS)
def test_the_gate_stays_safe_and_recovers(inputs, name: str) -> None:
    row = inputs.run(name)
    if row.skipped:
        pytest.skip(f"{name}: {row.skipped}")
    assert not row.relay_opened_during, row
    assert row.service_survived, row
    assert row.images_written == 0, row
    assert row.ledger_verified, row
    assert row.recovery_s is not None, row
    assert not row.failed
    if name == "matcher_absent_at_start":  # no exit (issue 14): referred, and says why
        assert row.says_why, row
        assert "refer_to_agent" in row.gate_states_during, row
    if name in MID_PULSE:  # the pulse ends in time, and the traveller is not let through twice
        assert row.pulse_s is not None and row.pulse_s <= PULSE_S + PULSE_SLACK_S, row
        assert row.pulses == 1, row
    if name == "ledger_full_filesystem":  # out of service, and the status file says why
        assert "out_of_service" in row.gate_states_during, row
        assert "ENOSPC" in row.ledger_failure_during, row


def test_a_short_soak_leaks_no_files_or_threads(inputs) -> None:
    """A minute of travellers through the real service (CI's short soak): open files and
    threads end where they were after start-up, and the service is still up."""
    from testbed.bench.soak import bench_soak

    result = bench_soak(60.0, inputs=inputs)
    assert result["service_survived"], result
    assert result["served"] and result["served"] >= 5, result
    assert result["open_files_end"] - result["open_files_start"] <= 2, result
    assert result["threads_end"] - result["threads_start"] <= 2, result

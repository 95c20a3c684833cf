"""Enrollment errors say what really failed, through the real enrollment port: an address
nobody answers, a CA that is not the service's, a token used, expired or for another
device. Only the last kind blames the token."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from appliance.errors import EnrollmentFailed
from appliance.matching.enrollment import enroll
from gate_contract.keys import DeviceScope
from matching_service.dev_ca import create_dev_pki
from tests.support import GRPC_CORE_LINE, REPO, console_script, without_grpc_logging

_ids = iter(range(10_000))


def _device() -> str:
    return f"gate-enr-{os.getpid()}-{next(_ids):04d}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _enroll(kit, tmp_path: Path, *, target=None, ca=None, token=None, device=None) -> str:
    device = device or _device()
    if token is None:
        token = kit.tokens.issue(device, ttl_s=600, scope=DeviceScope("LAX"))
    with pytest.raises(EnrollmentFailed) as caught:
        enroll(
            target or kit.enroll_target,
            ca or kit.ca_file.read_bytes(),
            token,
            device,
            tmp_path / f"pki-{next(_ids)}",
            airport="LAX",
            deadline_s=3.0,
        )
    return str(caught.value)


def test_nobody_at_the_address(enrollment_kit, tmp_path):
    message = _enroll(enrollment_kit, tmp_path, target=f"127.0.0.1:{_closed_port()}")
    assert "cannot reach the enrollment service" in message and "--enroll" in message
    assert "token" not in message.lower()


def test_a_host_that_does_not_resolve(enrollment_kit, tmp_path):
    message = _enroll(enrollment_kit, tmp_path, target="no-such-host.invalid:50052")
    assert "cannot reach the enrollment service" in message
    assert "token" not in message.lower()


def test_a_ca_that_is_not_the_services(enrollment_kit, tmp_path):
    other = create_dev_pki(tmp_path / "other-ca")
    message = _enroll(enrollment_kit, tmp_path, ca=other.ca_cert.read_bytes())
    assert "TLS" in message and "--ca-file" in message
    assert "token" not in message.lower()


@pytest.mark.parametrize("kind", ["unknown", "used", "expired", "wrong_device"])
def test_token_problems_blame_the_token(enrollment_kit, tmp_path, kind):
    device = _device()
    token = None
    if kind == "unknown":
        token = "made-up-token"
    elif kind == "used":
        token = enrollment_kit.tokens.issue(device, ttl_s=600, scope=DeviceScope("LAX"))
        enroll(
            enrollment_kit.enroll_target,
            enrollment_kit.ca_file.read_bytes(),
            token,
            device,
            tmp_path / "first",
            airport="LAX",
        )
    elif kind == "expired":
        token = enrollment_kit.tokens.issue(device, ttl_s=0.5, scope=DeviceScope("LAX"))
        time.sleep(1.0)
    else:
        token = enrollment_kit.tokens.issue(
            "gate-someone-else", ttl_s=600, scope=DeviceScope("LAX")
        )
    message = _enroll(enrollment_kit, tmp_path, token=token, device=device)
    wanted = {
        "unknown": "not known",
        "used": "already been used",
        "expired": "expired",
        "wrong_device": "another device",
    }[kind]
    assert wanted in message and "token" in message, message
    assert "gate-matcher issue-token" in message


@pytest.mark.parametrize("failure", ["another CA", "nobody at the address"])
def test_no_grpc_core_lines_reach_the_technician(enrollment_kit, tmp_path, failure):
    ca_file, enroll_target = enrollment_kit.ca_file, enrollment_kit.enroll_target
    if failure == "another CA":
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(create_dev_pki(tmp_path / "other-ca").ca_cert.read_bytes())
    else:
        enroll_target = f"127.0.0.1:{_closed_port()}"
    result = subprocess.run(
        [
            str(console_script("gatectl")),
            "provision",
            "-y",
            "--device-id=gate-x",
            "--airport=LAX",
            "--gate=B1",
            "--carrier=BA",
            "--flight=1",
            "--date=2030-01-01",
            "--camera=picamera2",
            f"--matcher={enrollment_kit.matcher_target}",
            f"--enroll={enroll_target}",
            f"--ca-file={ca_file}",
            "--token=abc",
            f"--config={tmp_path / 'gate.toml'}",
            f"--data-dir={tmp_path / 'state'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=without_grpc_logging(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one line: what failed and what to check
    assert not GRPC_CORE_LINE.search(result.stderr)
    wanted = "TLS" if failure == "another CA" else "cannot reach the enrollment service"
    assert wanted in lines[0]

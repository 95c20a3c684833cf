"""The encoder process pool: same templates as in-process, clear errors, many gates at once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import EncoderPoolError, NoFaceFound, UndecodableImage
from matching_service.gallery import Gallery, flight_key
from matching_service.server import server_threads, service_from_pki, start_server
from testbed.testing import FLIGHT


@pytest.fixture(scope="module")
def pool():
    with EncoderPool(2) as pool:
        yield pool


@pytest.fixture(scope="module")
def obama2(demo_photos: Path) -> bytes:
    return (demo_photos / "obama2.jpg").read_bytes()


@pytest.fixture(scope="module")
def reference(encoder, demo_photos: Path) -> np.ndarray:
    """obama2's template from the in-process encoder."""
    return encoder.encode(cv2.imread(str(demo_photos / "obama2.jpg")))


def grey_jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()


def test_workers_are_started_and_loaded(pool):
    assert pool.workers == 2
    pids = pool.pids()
    assert len(pids) == 2 and os.getpid() not in pids


def test_pool_gives_the_in_process_descriptor(pool, obama2, reference):
    descriptor = pool.encode_jpeg(obama2)
    assert descriptor.shape == (128,) and descriptor.dtype == np.float32
    np.testing.assert_allclose(descriptor, reference, atol=1e-6)


def test_callers_buffer_is_left_to_the_caller(pool, obama2, reference):
    buffer = bytearray(obama2)
    np.testing.assert_allclose(pool.encode_jpeg(buffer), reference, atol=1e-6)
    assert buffer == obama2  # the worker zeroizes its own copy, not the caller's


def test_image_without_a_face(pool):
    with pytest.raises(NoFaceFound):
        pool.encode_jpeg(grey_jpeg())


@pytest.mark.parametrize("payload", [b"not a jpeg at all", b"", b"\xff\xd8\xff" + bytes(64)])
def test_bad_payload_is_a_clear_error_and_the_pool_keeps_working(pool, obama2, reference, payload):
    with pytest.raises(UndecodableImage, match="not a decodable image"):
        pool.encode_jpeg(payload)
    np.testing.assert_allclose(pool.encode_jpeg(obama2), reference, atol=1e-6)


def test_concurrent_callers_all_succeed(pool, obama2, reference):
    results: list[np.ndarray] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call(payload: bytes, expect_face: bool) -> None:
        try:
            descriptor = pool.encode_jpeg(payload)
        except NoFaceFound as exc:
            if expect_face:
                with lock:
                    errors.append(exc)
            return
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(descriptor)

    jobs = [(obama2, True)] * 6 + [(grey_jpeg(), False)] * 2
    threads = [threading.Thread(target=call, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 6
    for descriptor in results:
        np.testing.assert_allclose(descriptor, reference, atol=1e-6)


def test_a_dead_worker_is_replaced(obama2, reference):
    with EncoderPool(1) as pool:
        (victim,) = pool.pids()
        os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(EncoderPoolError):
            pool.encode_jpeg(obama2)  # may be the call that finds the worker gone
        np.testing.assert_allclose(pool.encode_jpeg(obama2), reference, atol=1e-6)
        assert victim not in pool.pids() and len(pool.pids()) == 1


def test_closed_pool_refuses_calls(obama2):
    pool = EncoderPool(1)
    pool.close()
    pool.close()  # idempotent
    with pytest.raises(EncoderPoolError, match="closed"):
        pool.encode_jpeg(obama2)


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError):
        EncoderPool(0)


def test_grpc_threads_at_least_the_encoder_processes(pool, pki, tmp_path):
    service = service_from_pki(pki, Gallery(tmp_path / "g.sqlite"), None, pool)
    assert service.encoder_pool is pool
    assert server_threads(service, workers=1) == pool.workers
    assert server_threads(service, workers=64) == 64


def test_mtls_verify_through_the_pool(pool, pki, encoder, demo_photos, obama2, tmp_path):
    manifest = tmp_path / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": "PAX-OB",
                    "category": "us_citizen",
                    "photo": str(demo_photos / "obama.jpg"),
                },
                {
                    "traveller_id": "PAX-BI",
                    "category": "in_scope",
                    "photo": str(demo_photos / "biden.jpg"),
                },
            ]
        )
    )
    flight = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    gallery = Gallery(tmp_path / "gallery.sqlite")
    gallery.enroll_manifest(
        flight, manifest, encoder, photos_root=demo_photos
    )  # enrollment stays in-process
    service = service_from_pki(pki, gallery, encoder, pool)
    server, port = start_server(service, pki)
    client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=30)
    try:
        client.open_session(FLIGHT)

        def verify(jpeg: bytes) -> pb.Verdict:
            capture_id = str(uuid.uuid4())
            sealed = bytearray(sealed_size(len(jpeg)))
            at = now_ms()
            seal_into(sealed, jpeg, client.sealing_key, client.binding(capture_id, at))
            return client.verify(capture_id, at, sealed)

        verdict = verify(obama2)
        assert verdict.decision == pb.MATCH
        assert verdict.traveller_token == gallery.tokens(flight)["PAX-OB"]
        assert verify(grey_jpeg()).decision == pb.IMAGE_UNUSABLE
        assert verify(b"sealed but not an image").decision == pb.IMAGE_UNUSABLE
        assert verify(obama2).decision == pb.MATCH  # and the service keeps going
    finally:
        client.close()
        server.stop(grace=None)


def test_serve_starts_its_pool_and_stops_on_sigterm(tmp_path):
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "matching_service.cli",
                "--db",
                str(tmp_path / "matcher.sqlite"),
                "serve",
                "--pki",
                str(tmp_path / "pki"),
                "--dev-pki",
                "--address",
                "127.0.0.1:0",
                "--workers",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        line = process.stdout.readline()
        assert "listening" in line and "1 encoder processes" in line, (line, log.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            process.stdout.close()
    assert code == 0, log.read_text()


def test_workers_do_not_outlive_a_killed_service(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(
        "import sys, time\n"
        "from matching_service.encoder_pool import EncoderPool\n"
        "if __name__ == '__main__':\n"
        "    pool = EncoderPool(1)\n"
        "    print(*pool.pids(), flush=True)\n"
        "    time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        (worker,) = (int(pid) for pid in process.stdout.readline().split())
    finally:
        process.kill()  # no chance to close the pool
        process.wait(timeout=30)
        process.stdout.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    assert not _alive(worker), "encoder worker outlived its service"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status

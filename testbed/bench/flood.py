"""A flood of idle Verify streams against the reference service, and a real gate beside it.

The attacker, in its own process, holds one enrolled device's certificate and opens
``streams`` Verify streams that send nothing. Meanwhile another gate (its own device
certificate) keeps verifying captures and checking health every ``interval_s``. The figures
say whether the other gate stayed served: its verifies and health checks that failed, and
its verify latency, beside what the flood's streams got back.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc

from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.keys import PkiLayout
from gate_contract.progress import SILENT, Progress
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb_grpc
from matching_service.audit import AuditLog
from matching_service.dev_ca import DEV_DEVICE_ID, create_dev_pki, issue_device
from matching_service.gallery import Gallery
from matching_service.server import service_from_pki, start_server
from testbed.testing import FLIGHT

CHANNELS = 50  # the attacker spreads its streams over this many connections


def _flood(target: str, pki_root: str, streams: int, hold_s: float, out) -> None:
    """In the attacker's process: open ``streams`` silent streams, report their codes."""
    pki = PkiLayout(Path(pki_root))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=pki.device_key.read_bytes(),
        certificate_chain=pki.device_cert.read_bytes(),
    )
    channels = [grpc.secure_channel(target, credentials) for _ in range(CHANNELS)]
    release = threading.Event()

    def silence():
        release.wait(hold_s)
        return
        yield

    started = time.perf_counter()
    futures = [
        pb_grpc.MatchingStub(channels[i % CHANNELS]).Verify.future(silence(), timeout=hold_s + 30)
        for i in range(streams)
    ]
    codes: Counter[str] = Counter()
    for future in futures:
        try:
            future.result()
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
    release.set()
    out.put({"codes": dict(codes), "seconds": round(time.perf_counter() - started, 1)})
    for channel in channels:
        channel.close()


def bench_flood(
    streams: int = 10_000,
    hold_s: float = 20.0,
    interval_s: float = 0.1,
    progress: Progress = SILENT,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="gate-flood-") as work:
        root = Path(work)
        pki = create_dev_pki(root / "pki")
        gate_pki = issue_device(pki, root / "gate", "gate-lax-0099")
        service = service_from_pki(pki, Gallery(root / "g.sqlite"), None, audit=AuditLog())
        server, port = start_server(service, pki)
        target = f"localhost:{port}"
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        attacker = context.Process(
            target=_flood, args=(target, str(pki.root), streams, hold_s, results), daemon=True
        )
        gate = MatchingClient(target, gate_pki, "gate-lax-0099", deadline_s=3.0, retries=0)
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        health_failed = 0
        try:
            gate.open_session(FLIGHT)
            attacker.start()
            opened = time.monotonic()
            with progress.timed(f"{streams} idle streams", hold_s) as bar:
                while time.monotonic() < opened + hold_s and attacker.is_alive():
                    if not gate.health():
                        health_failed += 1
                    capture_id, at = f"legit-{time.monotonic_ns()}", now_ms()
                    sealed = bytearray(sealed_size(4))
                    seal_into(sealed, b"jpeg", gate.sealing_key, gate.binding(capture_id, at))
                    started = time.perf_counter()
                    try:
                        gate.verify(capture_id, at, sealed)
                        latencies.append((time.perf_counter() - started) * 1000)
                    except Exception as exc:  # counted, not raised: that is the measurement
                        failures[type(exc).__name__ + ": " + str(exc)[:60]] += 1
                    bar.set_postfix(gate_verifies=len(latencies), refresh=False)
                    bar.update(min(hold_s, time.monotonic() - opened) - bar.n)
                    time.sleep(interval_s)
            attacker.join(hold_s + 120)
            flood = results.get(timeout=10) if not results.empty() else {}
        finally:
            gate.close()
            if attacker.is_alive():
                attacker.terminate()
            server.stop(grace=None)
        return {
            "flood_streams": streams,
            "flood_codes": flood.get("codes", {}),
            "flood_seconds": flood.get("seconds"),
            "flood_device": DEV_DEVICE_ID,
            "gate_verifies": len(latencies),
            "gate_verify_failures": sum(failures.values()),
            "gate_failure_kinds": dict(failures),
            "gate_verify_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
            "gate_verify_ms_max": round(max(latencies), 1) if latencies else None,
            "gate_health_failed": health_failed,
            "too_many_streams_audited": len(service.audit.events("too_many_streams")),
        }


__all__ = ["CHANNELS", "bench_flood"]

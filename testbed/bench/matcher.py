"""Accuracy and latency of the reference matcher on a ``<identity>/*.jpg`` dataset.

Two parts, one recognizer (``--recognizer``), K document photos per traveller
(``--photos-per-traveller``):

* **Accuracy, offline** (``matching_service.calibration``'s protocol): every photo is
  encoded once; templates fused from K photos, the other photos as probes, pooled over
  folds: FNMR at FMR 1e-3 and 1e-4 (thresholds counted on this data), rank-1 and the
  1:N figures (FPIR, FNIR) at the service's shipped 1:N threshold for the gallery's size,
  and the 1:1 FMR/FNMR at its shipped 1:1 threshold. Failure to acquire is the share of
  photos without a usable face.
* **The real path**: a flight-sized gallery (the first K photos of each enrolled
  identity), the other photos as live captures, a share of identities left out as
  impostors. ``gates`` threads, each its own device with its own certificate and mTLS
  channel, seal every capture and stream it over gRPC; the service decrypts, encodes (in
  an ``EncoderPool`` of ``workers`` processes, as ``gate-matcher serve`` does;
  ``workers=0`` encodes in the service's own process), matches and signs, and the client
  checks each verdict. Verify latency p50/p99 and verifies/s come from here, and so do
  the service's own FNIR and FPIR at its thresholds (``grpc_*``): a genuine capture
  counts as matched only when the verdict names that traveller's token.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.gate.flight import Flight
from appliance.matching.breaker import CircuitBreaker
from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.progress import SILENT, Progress
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb
from matching_service.audit import AuditLog
from matching_service.calibration import accuracy, encode_dataset, fold_scores, load_dataset
from matching_service.dev_ca import create_dev_pki, issue_device
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import BenchError
from matching_service.gallery import Gallery, ManifestEntry, flight_key
from matching_service.recognizers import DEFAULT_RECOGNIZER, open_recognizer

BENCH_FLIGHT = Flight("ZZ", "0001", "2026-11-25", "LAX", "B1")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else 0.0


def bench_matcher(
    dataset: Path,
    gates: int = 4,
    *,
    impostor_share: float = 0.2,
    recognizer: str = DEFAULT_RECOGNIZER,
    photos_per_traveller: int = 1,
    workers: int | None = None,
    emit: Callable[[str], None] = print,
    progress: Progress = SILENT,
) -> dict:
    """Run the benchmark; returns the summary (``gate-matcher bench --json`` prints it).

    ``workers`` encoder processes serve the gates (default: one per CPU; 0: none, the
    service encodes in its own process).
    """
    if gates < 1:
        raise BenchError("gates must be at least 1")
    if photos_per_traveller < 1:
        raise BenchError("photos per traveller must be at least 1")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise BenchError("workers must be 0 (in-process) or more")
    identities = {k: v for k, v in load_dataset(dataset).items() if not k.startswith("_")}
    if len(identities) < 5:
        raise BenchError(f"{dataset}: need at least 5 identities with 2+ photos each")
    k = photos_per_traveller
    if sum(len(p) > k for p in identities.values()) < 5:
        raise BenchError(f"{dataset}: need at least 5 identities with more than {k} photos")
    encoder = open_recognizer(recognizer)
    info = encoder.info
    emit(f"encoding {sum(len(p) for p in identities.values())} photos with {info.template_id}")
    encoded = encode_dataset(identities, encoder, progress)
    names = list(identities)
    # every n-th identity is an impostor: at most half of them, at least one in the list
    every = max(2, round(min(len(names), 1 / impostor_share))) if impostor_share > 0 else 0
    impostors = {n for i, n in enumerate(names) if every and i % every == every - 1}
    enrolled = [n for n in names if n not in impostors]
    flight = flight_key(
        BENCH_FLIGHT.carrier,
        BENCH_FLIGHT.flight_number,
        BENCH_FLIGHT.date,
        BENCH_FLIGHT.departure_airport,
    )
    templates = dict(zip(identities, encoded.templates, strict=True))
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        work = Path(tmp)
        gallery = Gallery(work / "gallery.sqlite", info)
        scores = fold_scores(encoded, k)
        offline = accuracy(scores, gallery.thresholds.for_template(info.template_id, k))
        documents = []
        for name in enrolled:
            acquired = [t for t in templates[name][:k] if t is not None]
            if acquired and len(identities[name]) > k:
                entry = ManifestEntry(name, "in_scope", tuple(identities[name][: len(acquired)]))
                documents.append((entry, info.fuse(acquired)))
        issued = gallery.enroll_templates(flight, documents)
        tokens = dict(zip([e.traveller_id for e, _ in documents], issued, strict=True))
        probes = [(name, photo) for name in tokens for photo in identities[name][k:]]
        probes += [(None, photo) for name in impostors for photo in identities[name]]
        emit(
            f"gallery {len(tokens)} of {len(names)} identities, {len(impostors)} impostors, "
            f"{len(probes)} probes, {gates} gates, {workers or 'no'} encoder processes"
        )

        pki = create_dev_pki(work / "pki")
        audit = AuditLog(work / "audit.sqlite")
        from matching_service.server import service_from_pki, start_server

        pool = EncoderPool(workers, recognizer=recognizer) if workers else None
        results: list[tuple[str | None, str, int, str, float]] = []
        errors: list[str] = []
        lock = threading.Lock()
        server = None
        verifying = progress.bar("verifying", total=len(probes), unit="capture")
        try:
            service = service_from_pki(pki, gallery, encoder, pool, audit=audit)
            server, port = start_server(service, pki)
            clients = []
            for g in range(gates):
                device = f"gate-bench-{g:04d}"
                layout = issue_device(pki, work / "devices" / device, device)
                client = MatchingClient(
                    f"localhost:{port}",
                    layout,
                    device,
                    deadline_s=60,
                    breaker=CircuitBreaker(failure_threshold=1000),
                )
                client.open_session(BENCH_FLIGHT)
                clients.append(client)

            def gate(index: int) -> None:
                client = clients[index]
                for name, photo in probes[index::gates]:
                    data = photo.read_bytes()
                    capture_id = str(uuid.uuid4())
                    sealed = bytearray(sealed_size(len(data)))
                    captured_at = now_ms()
                    binding = client.binding(capture_id, captured_at)
                    seal_into(sealed, data, client.sealing_key, binding)
                    started = time.perf_counter()
                    try:
                        verdict = client.verify(capture_id, captured_at, sealed)
                    except Exception as exc:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}")
                            verifying.update()
                        continue
                    elapsed = (time.perf_counter() - started) * 1000
                    with lock:
                        results.append(
                            (name, capture_id, verdict.decision, verdict.traveller_token, elapsed)
                        )
                        verifying.update()

            threads = [threading.Thread(target=gate, args=(g,)) for g in range(gates)]
            wall = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - wall
            for client in clients:
                client.close()
        finally:
            verifying.close()
            if server is not None:
                server.stop(grace=None)
            if pool is not None:
                pool.close()
        nearest = {r.capture_id: r.nearest_token for r in audit.verify_log()}

    genuine = [r for r in results if r[0] is not None]
    impostor = [r for r in results if r[0] is None]
    matched = sum(r[2] == pb.MATCH and r[3] == tokens[r[0]] for r in genuine)
    usable = [r for r in genuine if r[2] != pb.IMAGE_UNUSABLE]
    rank1 = sum(nearest.get(r[1]) == tokens[r[0]] for r in usable)
    latencies = [r[4] for r in results]
    return {
        "recognizer": info.name,
        "template_id": info.template_id,
        "photos_per_traveller": k,
        "identities": len(names),
        "photos": encoded.photos,
        "failure_to_acquire": round(encoded.failed / encoded.photos, 4),
        "ms_per_photo": round(encoded.ms_per_photo, 1),
        "ms_per_template": round(k * encoded.ms_per_photo, 1),
        "fnmr_at_fmr_1e-3": offline["fnmr_at_fmr_1e-3"],
        "fnmr_at_fmr_1e-4": offline["fnmr_at_fmr_1e-4"],
        "rank1": offline["rank1"],
        "threshold_1to1": offline["threshold_1to1"],
        "fmr_at_threshold_1to1": offline["fmr_at_threshold_1to1"],
        "fnmr_at_threshold_1to1": offline["fnmr_at_threshold_1to1"],
        "threshold_1toN": offline["threshold_1toN"],
        "fpir_at_threshold_1toN": offline["fpir_at_threshold_1toN"],
        "fnir_at_threshold_1toN": offline["fnir_at_threshold_1toN"],
        "genuine_pairs": offline["genuine_pairs"],
        "impostor_pairs": offline["impostor_pairs"],
        "gallery": len(tokens),
        "impostor_identities": len(impostors),
        "probes": len(results),
        "genuine_probes": len(genuine),
        "impostor_probes": len(impostor),
        "grpc_threshold_1toN": round(gallery.threshold_1ton(k, len(tokens)), 4),
        "grpc_fnir": round(1 - matched / len(genuine), 4) if genuine else None,
        "grpc_failure_to_acquire": (
            round(sum(r[2] == pb.IMAGE_UNUSABLE for r in genuine) / len(genuine), 4)
            if genuine
            else None
        ),
        "grpc_rank1": round(rank1 / len(usable), 4) if usable else None,
        "grpc_fpir": (
            round(sum(r[2] == pb.MATCH for r in impostor) / len(impostor), 4) if impostor else None
        ),
        "verify_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "verify_ms_p99": round(_percentile(latencies, 99), 1) if latencies else None,
        "verifies_per_s": round(len(results) / wall, 1) if wall > 0 else None,
        "gates": gates,
        "encoder_workers": workers,
        "errors": len(errors),
        "cpus": os.cpu_count(),
    }


__all__ = ["BENCH_FLIGHT", "bench_matcher"]

"""The reference matching service's gRPC server: mutual TLS, health, thread pool.

``start_server`` serves a :class:`~matching_service.servicer.MatchingService` on one
address; ``service_from_pki`` builds the service with the keys of a PKI folder.
"""

from __future__ import annotations

import os
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gate_contract.keys import PkiLayout, load_private
from gate_contract.wire import MATCHING_SERVICE
from matching_service.encoder_pool import EncoderPool
from matching_service.gallery import Gallery
from matching_service.handlers import register
from matching_service.recognizers import Recognizer
from matching_service.servicer import CHUNK_LIMIT, MatchingService


def server_options() -> list[tuple[str, int]]:
    """Channel options of both servers: message size, keepalive, connection age."""
    return [
        ("grpc.max_receive_message_length", CHUNK_LIMIT),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", 8),  # per connection: one gate sends one at a time
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # gates ping every 30 s
        ("grpc.max_connection_idle_ms", 15 * 60_000),
        ("grpc.max_connection_age_ms", 6 * 3_600_000),  # connections are renewed
        ("grpc.max_connection_age_grace_ms", 30_000),
    ]


def default_workers() -> int:
    """Worker threads for the gRPC pool: enough for many gates on this machine."""
    return max(4, 4 * (os.cpu_count() or 1))


def server_threads(service: MatchingService, workers: int | None = None) -> int:
    """gRPC threads for ``service``: never fewer than its encoder processes."""
    threads = workers or default_workers()
    pool = service.encoder_pool
    return max(threads, pool.workers) if pool is not None else threads


def add_health(server: grpc.Server, services: tuple[str, ...]) -> health.HealthServicer:
    """Standard ``grpc.health.v1`` on ``server``: overall ("") and per service, SERVING."""
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *services):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def start_server(
    service: MatchingService,
    pki: PkiLayout,
    address: str = "127.0.0.1:0",
    workers: int | None = None,
) -> tuple[grpc.Server, int]:
    """Start a mutual-TLS gRPC server; returns it and the port it bound.

    The server also answers ``grpc.health.v1`` (kept at ``service.health``). Its thread
    pool has ``workers`` threads (default: ``default_workers()``), and never fewer than
    the service's encoder processes, so every worker can be busy at once. There is no
    server-wide call limit (``maximum_concurrent_rpcs``) on purpose: it would let one
    device's flood refuse every other gate before the per-device limit is reached.
    """
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    threads = server_threads(service, workers)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        options=server_options(),
    )
    register(server, service, "Matching")
    service.health = add_health(server, (MATCHING_SERVICE,))
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's "Failed to bind": in use, or not an address of this host
        port = 0
    if port == 0:
        raise OSError(
            f"could not bind the matching service to {address} (in use by another program,"
            " or not an address of this host)"
        )
    server.start()
    return server, port


def service_from_pki(
    pki: PkiLayout,
    gallery: Gallery,
    encoder: Recognizer | None,
    pool: EncoderPool | None = None,
    **options,
) -> MatchingService:
    """A service with ``pki``'s payload and signing keys; ``options`` go to the service.

    With ``pool``, live captures are encoded in its worker processes (the caller closes
    it); without, in this process by ``encoder``.
    """
    return MatchingService(
        gallery,
        encoder,
        load_private(pki.sealing_key),
        load_private(pki.signing_key),
        pool=pool,
        **options,
    )


__all__ = [
    "add_health",
    "default_workers",
    "server_options",
    "server_threads",
    "service_from_pki",
    "start_server",
]

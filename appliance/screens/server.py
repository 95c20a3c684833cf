"""The screens' web server: uvicorn on a thread of the service, stopped by its owner.

The socket is bound before the thread starts (port 0: the kernel picks one, known at
once, no race). Off the main thread uvicorn installs no signal handlers: the service
keeps handling SIGTERM and stops the server with :meth:`ScreenServer.stop`, which ends
every live stream first (``LaneBoard.close``) so the stop takes a fraction of a second.

Bound beyond loopback the server speaks HTTPS only, with the unit's certificate: before
anything is served the certificate and key are checked (readable, the key matches, in
date, usable for a TLS server) and any problem is one :class:`ScreensError` naming it.

Connections are served by ``connections.guarded_h11`` (a deadline for the TLS handshake
and every request, a cap per client address; it does the TLS itself) instead of
uvicorn's ``limit_concurrency``, which counted idle connections and so let a few dozen
of them shut every page out.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from starlette.types import ASGIApp

from appliance.errors import ScreensError
from appliance.screens.board import LaneBoard
from appliance.screens.connections import guarded_h11
from appliance.screens.settings import ScreenSettings, is_loopback

log = logging.getLogger("gate.screens")

START_TIMEOUT_S = 10.0


def check_certificate(certificate: Path, key: Path) -> x509.Certificate:
    """The unit's HTTPS certificate, checked; :class:`ScreensError` says what is wrong."""
    try:
        chain = x509.load_pem_x509_certificates(certificate.read_bytes())
    except (OSError, ValueError) as exc:
        raise ScreensError(f"screens certificate {certificate}: {exc}") from exc
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ScreensError(f"screens key {key}: {exc}") from exc
    leaf = chain[0]
    mine = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if mine != theirs:
        raise ScreensError(f"screens key {key} does not belong to certificate {certificate}")
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise ScreensError(
            f"screens certificate {certificate} is valid {leaf.not_valid_before_utc:%Y-%m-%d}"
            f" to {leaf.not_valid_after_utc:%Y-%m-%d}, not now"
        )
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise ScreensError(
            f"screens certificate {certificate} is not for TLS servers (no serverAuth usage;"
            " the matcher client certificate cannot serve HTTPS)"
        )
    return leaf


def check_binding(settings: ScreenSettings) -> None:
    """Beyond loopback: HTTPS only."""
    if not is_loopback(settings.bind) and not settings.https:
        raise ScreensError(
            f"screens bound to {settings.bind}: beyond loopback the screens are served over"
            " HTTPS only; set [screens] certificate and key (the unit's certificate)"
        )
    if settings.https:
        assert settings.certificate is not None and settings.key is not None
        check_certificate(settings.certificate, settings.key)


class ScreenServer:
    """uvicorn serving ``app`` on a daemon thread."""

    def __init__(self, app: ASGIApp, settings: ScreenSettings, board: LaneBoard) -> None:
        check_binding(settings)
        self.settings = settings
        self.board = board
        family = socket.AF_INET6 if ":" in settings.bind else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it every response on a kept-alive connection waited ~40 ms (delayed ACK)
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((settings.bind, settings.port))
            self._socket.listen(64)
        except OSError as exc:
            self._socket.close()
            raise ScreensError(f"screens on {settings.bind}:{settings.port}: {exc}") from exc
        self.port = self._socket.getsockname()[1]
        tls = None
        if settings.certificate is not None and settings.key is not None:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                tls.load_cert_chain(settings.certificate, settings.key)
            except (OSError, ssl.SSLError) as exc:
                self._socket.close()
                raise ScreensError(f"screens certificate {settings.certificate}: {exc}") from exc
        config = uvicorn.Config(
            app,
            log_config=None,  # the service's logging stays as it is
            access_log=False,
            lifespan="on",
            loop="asyncio",
            http=guarded_h11(tls),  # TLS too: after the connection caps, within the deadline
            ws="none",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="screens", daemon=True)

    @property
    def url(self) -> str:
        host = self.settings.bind
        shown = f"[{host}]" if ":" in host else host
        return f"{self.settings.scheme}://{shown}:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except Exception:
            log.exception("screens: the web server stopped")

    def start(self) -> ScreenServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise ScreensError(f"screens on {self.url}: the web server did not start")
            time.sleep(0.01)
        log.info("screens at %s/ (agent station %s/agent)", self.url, self.url)
        return self

    def close(self) -> None:
        """End the live streams, then the server (idempotent)."""
        self.board.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(5.0)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5.0)
        self._socket.close()


__all__ = ["START_TIMEOUT_S", "ScreenServer", "check_binding", "check_certificate"]

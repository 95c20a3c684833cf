"""A gate's screens served for real on loopback, fed by a gate machine on a fake link.

The web server, the board, the authenticator (real scrypt PINs) and the metrics are the
production parts; only the gate side is a stand-in: a ``GateController`` over
``testbed.testing.FakeLink`` that the tests drive, and capture progress the tests hand
to the board, as the capture pipeline would.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.gate.agents import (
    AgentCommand,
    AgentCredentials,
    CancelReason,
    PinAuthenticator,
    ReleaseReason,
    hash_pin,
)
from appliance.gate.machine import GateController
from appliance.screens.board import LaneBoard, LaneIdentity
from appliance.screens.metrics import GateMetrics
from appliance.screens.pages import ScreenParts, build_app
from appliance.screens.server import ScreenServer
from appliance.screens.settings import ScreenSettings
from gate_contract.files import write_private
from testbed.testing import FakeLink, capture_progress

AGENT, PIN = "A123", "482913"
_HASHES = {AGENT: hash_pin(PIN)}


@dataclass
class Desk:
    """The workflow's agent commands, recorded, on the test's gate."""

    gate: GateController
    calls: list[tuple[str, AgentCommand, str]] = field(default_factory=list)

    def agent_command(
        self, agent_id: str, command: AgentCommand, reason: ReleaseReason | CancelReason
    ) -> bool:
        self.calls.append((agent_id, command, reason.value))
        if command is AgentCommand.RELEASE:
            return self.gate.agent_release(f"agent {agent_id}")
        return self.gate.agent_cancel(f"agent {agent_id}")


@dataclass
class Unit:
    link: FakeLink
    gate: GateController
    board: LaneBoard
    desk: Desk
    metrics: GateMetrics
    server: ScreenServer

    @property
    def url(self) -> str:
        return self.server.url

    def progress(self, failure: str | None, box=(0.45, 0.3, 0.55, 0.48), faces: int = 1) -> None:
        """One frame of a capture, as the pipeline reports it (1280x720, coordinates only)."""
        self.board.capture_progress(capture_progress(failure, box, faces))


@pytest.fixture
def make_unit() -> Iterator:
    made: list[Unit] = []

    def make(pass_first: bool = True, gate_name: str = "B42", **settings) -> Unit:
        link = FakeLink()
        gate = GateController(link, passage_window_s=30.0)
        board = LaneBoard(
            LaneIdentity(f"gate-{gate_name}", gate_name, "BA0283 2026-11-25 LAX", pass_first),
            min_inter_eye_px=28.0,
            zone_width=1.0,
            dwell_s=0.0,
        )
        board.follow(gate)
        gate.start()
        desk = Desk(gate)
        metrics = GateMetrics()
        config = replace(ScreenSettings(port=0), **settings)
        credentials = AgentCredentials(PinAuthenticator(_HASHES))
        app = build_app(ScreenParts(board, credentials, desk, metrics, config))
        server = ScreenServer(app, config, board).start()
        unit = Unit(link, gate, board, desk, metrics, server)
        made.append(unit)
        return unit

    yield make
    for unit in made:
        unit.server.close()
        unit.gate.close()


@pytest.fixture
def unit(make_unit) -> Unit:
    return make_unit()


class _Pages(http.server.BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_site() -> Iterator:
    """serve(path, html) -> port: an attacker's page on 127.0.0.1, another port."""
    handler = type("Hostile", (_Pages,), {"pages": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(path: str, html: str) -> int:
        handler.pages[path] = html.encode()
        return server.server_address[1]

    yield serve
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Tls:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def cert(self, name: str = "server") -> Path:
        return self.folder / f"{name}.pem"

    def key(self, name: str = "server") -> Path:
        return self.folder / f"{name}.key"


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> Tls:
    """A test CA and leaf certificates made with `cryptography`: ``server`` (serverAuth,
    SAN localhost + 127.0.0.1), ``client_only`` (clientAuth, like the matcher client
    certificate), ``expired``."""
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Gate Test CA"))
        .issuer_name(_name("Gate Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    leaves = {
        "server": ([ExtendedKeyUsageOID.SERVER_AUTH], now + dt.timedelta(days=1)),
        "client_only": ([ExtendedKeyUsageOID.CLIENT_AUTH], now + dt.timedelta(days=1)),
        "expired": ([ExtendedKeyUsageOID.SERVER_AUTH], now - dt.timedelta(minutes=1)),
    }
    for name, (usages, until) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(until)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (folder / f"{name}.pem").write_bytes(leaf.public_bytes(pem))
        write_private(
            folder / f"{name}.key",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        )
    return Tls(folder)

"""Shared fixtures: the real matching service on loopback and a gate on a real pty."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from appliance.detector import Detector, create_detector
from appliance.gate import GateController
from appliance.matching_client import FlightInfo, MatchingClient
from appliance.paths import demo_assets_dir
from appliance.pki import DEV_DEVICE_ID, PkiLayout, create_dev_pki
from firmware_bridge.host import GateLink
from firmware_bridge.simulator import Simulator
from matching_service.gallery import Gallery, flight_key
from matching_service.recognizer import FaceEncoder
from matching_service.server import MatchingService, service_from_pki, start_server

FLIGHT = FlightInfo("BA", "0283", "2026-11-25", "LAX", "B42")


@pytest.fixture(scope="session")
def demo_photos() -> Path:
    folder = demo_assets_dir()
    if not (folder / "obama.jpg").exists():
        pytest.fail(
            f"demo photos missing in {folder}: run `make setup` (scripts/acquire_assets.py)"
        )
    return folder


@pytest.fixture(scope="session")
def detector() -> Detector:
    return create_detector()


@pytest.fixture(scope="session")
def encoder() -> FaceEncoder:
    return FaceEncoder()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Matcher:
    service: MatchingService
    server: grpc.Server
    port: int
    pki: PkiLayout

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    def client(
        self, pki: PkiLayout | None = None, device_id: str = DEV_DEVICE_ID
    ) -> MatchingClient:
        client = MatchingClient(self.target, pki or self.pki, device_id, deadline_s=10.0)
        return client


@pytest.fixture(scope="session")
def matcher(
    tmp_path_factory: pytest.TempPathFactory,
    pki: PkiLayout,
    encoder: FaceEncoder,
    demo_photos: Path,
) -> Iterator[Matcher]:
    """The reference service with a flight gallery of two document photos."""
    work = tmp_path_factory.mktemp("matcher")
    manifest = work / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": "PAX-001",
                    "category": "us_citizen",
                    "photo": str(demo_photos / "obama.jpg"),
                },
                {
                    "traveller_id": "PAX-002",
                    "category": "in_scope",
                    "photo": str(demo_photos / "biden.jpg"),
                },
            ]
        )
    )
    gallery = Gallery(work / "gallery.sqlite")
    flight = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    gallery.enroll_manifest(flight, manifest, encoder)
    service = service_from_pki(pki, gallery, encoder)
    server, port = start_server(service, pki)
    yield Matcher(service, server, port, pki)
    server.stop(grace=None)


@pytest.fixture
def client(matcher: Matcher) -> Iterator[MatchingClient]:
    client = matcher.client()
    client.open_session(FLIGHT)
    yield client
    client.close()


@dataclass
class GateRig:
    simulator: Simulator
    link: GateLink
    gate: GateController


@pytest.fixture
def gate_rig() -> Iterator[GateRig]:
    """Firmware simulator on a pseudo-terminal, the host driver on its other end."""
    key = os.urandom(32)
    simulator = Simulator(key).start()
    link = GateLink(simulator.port, key).open()
    gate = GateController(link)
    gate.start()
    yield GateRig(simulator, link, gate)
    link.close()
    simulator.stop()


def copy_layout(source: PkiLayout, target: Path) -> PkiLayout:
    """A copy of a PKI folder, to swap single files in tests."""
    shutil.copytree(source.root, target)
    return PkiLayout(target)

"""Shared fixtures: the real matching service on loopback and a gate on a real pty."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from appliance.gate.machine import GateController
from appliance.matching.client import MatchingClient
from appliance.paths import demo_assets_dir
from appliance.vision.detectors import create_detector
from appliance.vision.detectors.base import Detector
from firmware_bridge.host import GateLink
from firmware_bridge.simulator import Simulator
from gate_contract.keys import PkiLayout
from gate_contract.paths import data_dir
from matching_service.dev_ca import DEV_DEVICE_ID, create_dev_pki
from matching_service.enrollment import EnrollmentService, EnrollmentTokens, start_enrollment_server
from matching_service.gallery import Gallery, flight_key
from matching_service.limits import RateLimit
from matching_service.recognizers import Recognizer, open_recognizer
from matching_service.server import service_from_pki, start_server
from matching_service.servicer import MatchingService
from testbed.testing import FLIGHT
from tests.support import EnrollmentKit

_REAL_DATA_DIR = data_dir()  # read before the session points GATE_DATA_DIR elsewhere


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir of the session's own, so no test writes PKI or runs into the real one.

    Set-up's read-only assets come from the real data dir by symlink: the model and
    MicroPython runtime folders, and each demo photo one by one, so the camera scenes
    the demo makes at first use (``demo/scenes/``) are written here and not into the
    real folder. ``GATE_DATA_DIR``
    is set in ``os.environ`` for the whole session, so subprocesses inherit it.
    """
    root = tmp_path_factory.mktemp("gate-data")
    real = _REAL_DATA_DIR
    for prepared in ("models", "micropython", "tools"):
        if (real / prepared).is_dir():
            (root / prepared).symlink_to(real / prepared, target_is_directory=True)
    demo = root / "demo"
    demo.mkdir()
    if (real / "demo").is_dir():
        for asset in sorted((real / "demo").iterdir()):
            if asset.is_file():
                (demo / asset.name).symlink_to(asset)
    previous = os.environ.get("GATE_DATA_DIR")
    os.environ["GATE_DATA_DIR"] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop("GATE_DATA_DIR", None)
        else:
            os.environ["GATE_DATA_DIR"] = previous


@pytest.fixture(scope="session")
def demo_photos(isolated_data_dir: Path) -> Path:
    folder = demo_assets_dir()
    if not (folder / "obama.jpg").exists():
        pytest.fail(
            f"demo photos missing in {_REAL_DATA_DIR / 'demo'}: set-up must have run first"
            " (`make setup`, scripts/acquire_assets.py)"
        )
    return folder


@pytest.fixture(scope="session")
def detector() -> Detector:
    return create_detector()


@pytest.fixture(scope="session")
def encoder() -> Recognizer:
    return open_recognizer("dlib")


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
    encoder: Recognizer,
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
    gallery.enroll_manifest(flight, manifest, encoder, photos_root=demo_photos)
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


@pytest.fixture(scope="session")
def enrollment_kit(
    matcher: Matcher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EnrollmentKit]:
    """The enrollment port beside the session's matching service (same CA and keys)."""
    work = tmp_path_factory.mktemp("enrollment")
    tokens = EnrollmentTokens(work / "tokens.sqlite")
    # The whole test session enrolls from one address, far faster than any technician.
    many = RateLimit(per_key_rate=100.0, per_key_burst=1000, total_rate=100.0, total_burst=1000)
    service = EnrollmentService(matcher.pki, tokens, attempts=many)
    server, port = start_enrollment_server(service, matcher.pki)
    ca_file = work / "kit-ca.pem"
    ca_file.write_bytes(matcher.pki.ca_cert.read_bytes())
    yield EnrollmentKit(tokens, f"localhost:{port}", matcher.target, ca_file)
    server.stop(grace=None)


# Debian's Chromium through Playwright, for the browser tests (tests/browser.py).
from tests.browser import browser, page  # noqa: E402, F401

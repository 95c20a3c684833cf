"""A gallery enrolled while the service runs is picked up: `gate-matcher enroll` (another
process, the same database) adds travellers while the matcher serves, and the gate's
session keeper, refreshing, shows the new size. Real matcher over mutual TLS."""

from __future__ import annotations

import subprocess
import sys

from appliance.service.session import SessionKeeper
from matching_service.gallery import Gallery
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from testbed.testing import FLIGHT
from tests.support import REPO, write_two_traveller_manifest


def test_a_gallery_enrolled_while_serving_shows_in_the_session(pki, encoder, demo_photos, tmp_path):
    db = tmp_path / "gallery.sqlite"
    service = service_from_pki(pki, Gallery(db), encoder)
    server, port = start_server(service, pki)
    client = None
    keeper = None
    try:
        from appliance.matching.client import MatchingClient

        client = MatchingClient(f"localhost:{port}", pki, "gate-dev-0001", deadline_s=5)
        keeper = SessionKeeper(client, FLIGHT, refresh_s=0.2)
        assert keeper.open_now()
        assert keeper.state.gallery_size == 0  # nobody enrolled yet
        keeper.start()

        manifest = tmp_path / "gallery.json"
        write_two_traveller_manifest(manifest, demo_photos)
        result = subprocess.run(
            [sys.executable, "-m", "matching_service.cli", "--db", str(db), "enroll",
             "--flight", FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date,
             FLIGHT.departure_airport, "--manifest", str(manifest),
             "--photos-root", str(demo_photos)],
            capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: keeper.state.gallery_size == 2, 30), keeper.state
    finally:
        if keeper is not None:
            keeper.close()
        if client is not None:
            client.close()
        server.stop(grace=None)

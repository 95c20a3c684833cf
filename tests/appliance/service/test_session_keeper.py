"""The session keeper opens the session as soon as the matching service is back, even
while the client's breaker is open for travellers. Real matcher over mutual TLS on
loopback, started on a port where nothing listened when the keeper began."""

from __future__ import annotations

import socket

import pytest

from appliance.errors import MatchingUnavailable
from appliance.matching.breaker import CircuitBreaker
from appliance.matching.client import MatchingClient
from appliance.service.session import RETRY_MAX_S, SessionKeeper
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from testbed.testing import FLIGHT

COOLDOWN_S = 300.0  # far longer than the test waits: the breaker stays open for travellers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_session_opens_as_soon_as_the_service_is_back(matcher, encoder):
    port = _free_port()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=COOLDOWN_S)
    client = MatchingClient(
        f"localhost:{port}", matcher.pki, DEV_DEVICE_ID, deadline_s=1.0, breaker=breaker
    )
    keeper = SessionKeeper(client, FLIGHT, refresh_s=COOLDOWN_S)
    server = None
    try:
        with pytest.raises(MatchingUnavailable):
            client.open_session(FLIGHT)  # a traveller's call: the breaker opens
        assert breaker.state == "open"
        keeper.start()
        assert wait_for(lambda: "failed" in keeper.state.detail, 30), keeper.state
        service = service_from_pki(matcher.pki, matcher.service.matcher.gallery, encoder)
        server, bound = start_server(service, matcher.pki, address=f"127.0.0.1:{port}")
        assert bound == port
        # within the keeper's short backoff, not the breaker's cool-down
        assert wait_for(lambda: keeper.ready, 10 * RETRY_MAX_S), keeper.state
        assert keeper.state.gallery_size == 2
        assert breaker.state == "closed"  # travellers are served again at once
    finally:
        keeper.close()
        client.close()
        if server is not None:
            server.stop(grace=None)

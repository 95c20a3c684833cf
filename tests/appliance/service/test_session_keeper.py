"""The session keeper opens the session as soon as the matching service is back, not
after its backoff or the breaker's cool-down. Real matcher over mutual TLS on loopback,
started on a port where nothing listened when the keeper began."""

from __future__ import annotations

import socket

from appliance.matching.breaker import CircuitBreaker
from appliance.matching.client import MatchingClient
from appliance.service.session import SessionKeeper
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from testbed.testing import FLIGHT

LONG_S = 300.0  # backoff and cool-down far longer than the test may wait


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_session_opens_as_soon_as_the_service_is_back(matcher, encoder):
    port = _free_port()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=LONG_S)
    client = MatchingClient(f"localhost:{port}", matcher.pki, DEV_DEVICE_ID, breaker=breaker)
    keeper = SessionKeeper(client, FLIGHT, refresh_s=LONG_S, retry_first_s=LONG_S)
    server = None
    try:
        keeper.start()
        assert wait_for(lambda: breaker.state == "open", 30)  # the first open failed
        assert not keeper.ready
        service = service_from_pki(matcher.pki, matcher.service.matcher.gallery, encoder)
        server, bound = start_server(service, matcher.pki, address=f"127.0.0.1:{port}")
        assert bound == port
        # within the gRPC channel's own reconnect backoff (at most 2 s), not LONG_S
        assert wait_for(lambda: keeper.ready, 30), keeper.state
        assert keeper.state.gallery_size == 2 and breaker.state == "closed"
    finally:
        keeper.close()
        client.close()
        if server is not None:
            server.stop(grace=None)

"""The screens flooded by anonymous clients, over real HTTP(S) on loopback.

Each test is an attack that worked once: page loads signing agents out, summary streams
freezing the display and the station, idle connections shutting every page out,
concurrent wrong PINs slipping past the gate-wide throttle, a flood of wrong PINs from
the network locking the unit's own station out. "The network" is played by clients bound
to other loopback addresses (127.0.0.2, ...): the unit's own screen connects from
127.0.0.1 (``appliance.screens.settings.is_kiosk``).
"""

from __future__ import annotations

import collections
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from appliance.gate.machine import State
from appliance.screens.connections import CONNECTIONS_PER_CLIENT, REQUEST_DEADLINE_S
from appliance.screens.limits import STREAMS_PER_CLIENT
from appliance.screens.security import MAX_SESSIONS, THROTTLE_FAILURES
from firmware_bridge.host import OptOutPressed
from testbed.runs import wait_for
from tests.appliance.screens.conftest import AGENT, PIN
from tests.appliance.screens.test_http import csrf_of, first_event, signed_in


def client_from(url: str, address: str = "127.0.0.1", **kw) -> httpx.Client:
    """A client on ``address``: 127.0.0.1 is the kiosk, other loopback addresses the network."""
    transport = httpx.HTTPTransport(local_address=address, verify=kw.pop("verify", True))
    return httpx.Client(base_url=url, transport=transport, timeout=10, **kw)


def raw_stream(port: int, path: str, address: str) -> tuple[socket.socket, str]:
    """A stream held open on a bare socket from ``address``: (socket, status line)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(address, 0))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    return sock, status


SUMMARY = {"page": "summary"}


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def test_anonymous_page_loads_do_not_sign_an_agent_out(unit) -> None:
    with httpx.Client(base_url=unit.url) as agent:
        token = signed_in(agent)

        def visit(count: int) -> None:
            with httpx.Client(base_url=unit.url) as visitors:
                for _ in range(count):  # each one a fresh visitor, no cookie
                    visitors.cookies.clear()
                    assert "credential" in visitors.get("/agent").text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(visit, [(MAX_SESSIONS + 44) // 8 + 1] * 8))
        unit.link.emit(OptOutPressed())
        assert first_event(agent, "/agent/events")[0].status_code == 200
        answer = agent.post(
            "/agent/action",
            data={"csrf": token, "action": "release", "reason": "documents_checked"},
        )
        assert answer.status_code == 303
    assert unit.desk.calls and unit.gate.phase is State.AGENT_RELEASED


def test_summary_streams_leave_the_display_and_the_station_served(make_unit, sockets) -> None:
    unit = make_unit(max_streams=3 * STREAMS_PER_CLIENT)
    port = unit.server.port
    statuses = collections.Counter()
    # from the kiosk's own address, then from three network addresses: the shared places
    for address in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"):
        for _ in range(STREAMS_PER_CLIENT + 4):
            sock, status = raw_stream(port, "/events/summary", address)
            sockets.append(sock)
            statuses[status] += 1
    assert statuses == {
        "HTTP/1.1 200 OK": 3 * STREAMS_PER_CLIENT,
        "HTTP/1.1 429 Too Many Requests": 3 * 4,  # beyond each address's share
        "HTTP/1.1 503 Service Unavailable": STREAMS_PER_CLIENT + 4,  # all shared ones taken
    }
    with httpx.Client(base_url=unit.url) as kiosk:
        assert first_event(kiosk, "/events/display")[0].status_code == 200
    with httpx.Client(base_url=unit.url) as agent:
        signed_in(agent)
        assert first_event(agent, "/agent/events")[0].status_code == 200
        assert first_event(agent, "/events/summary")[0].status_code == 200  # own overview
    for sock in sockets:  # the streams end: their places come back
        sock.close()
    assert wait_for(
        lambda: not unit.metrics.registry.get_sample_value("gate_screen_clients", SUMMARY)
    )
    sock, status = raw_stream(port, "/events/summary", "127.0.0.5")
    sockets.append(sock)
    assert status == "HTTP/1.1 200 OK"


def test_idle_connections_leave_every_page_served(make_unit, tls, sockets) -> None:
    plain = make_unit()
    https = make_unit(certificate=tls.cert(), key=tls.key(), bind="127.0.0.1")
    context = ssl.create_default_context(cafile=str(tls.ca))
    for port in (plain.server.port, https.server.port):
        for address in ("127.0.0.1", "127.0.0.2"):
            for _ in range(64):  # the old limit was max_streams + 32 = 64 connections
                sockets.append(
                    socket.create_connection(("127.0.0.1", port), source_address=(address, 0))
                )
    half_sent = socket.create_connection(("127.0.0.1", plain.server.port))
    half_sent.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    body_held = socket.create_connection(("127.0.0.1", plain.server.port))
    body_held.sendall(
        b"POST /agent/login HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: 100\r\n"
        b"content-type: application/x-www-form-urlencoded\r\n\r\ncsrf="
    )
    tls_idle = [
        context.wrap_socket(
            socket.create_connection(("127.0.0.1", https.server.port)),
            server_hostname="localhost",
        )
        for _ in range(8)
    ]
    sockets.extend([half_sent, body_held, *tls_idle])
    assert httpx.get(plain.url + "/").status_code == 200  # the kiosk, at once
    with client_from(plain.url, "127.0.0.3") as other:  # another host on the network
        assert other.get("/").status_code == 200
    with httpx.Client(base_url=https.url, verify=context) as kiosk:
        assert kiosk.get("/").status_code == 200
    # 64 silent connections from one address: it may not even start a TLS handshake now
    with pytest.raises(OSError):
        context.wrap_socket(
            socket.create_connection(
                ("127.0.0.1", https.server.port), source_address=("127.0.0.2", 0)
            ),
            server_hostname="localhost",
        )
    # one address beyond the kiosk holds only its share; the rest were turned away
    crowded = sockets[64:128]
    for sock in crowded:
        sock.settimeout(10)
    refused = [sock for sock in crowded if sock.recv(64).startswith(b"HTTP/1.1 503")]
    assert len(refused) == 64 - CONNECTIONS_PER_CLIENT
    # and every connection that never sent a whole request (or never said TLS hello) is
    # closed after the deadline
    waiting = [half_sent, body_held, *tls_idle, *sockets[:64], *sockets[128:256]]
    for sock in waiting:
        sock.settimeout(REQUEST_DEADLINE_S + 10)
    started = time.monotonic()
    assert all(sock.recv(64) == b"" for sock in waiting)
    print(f"idle connections closed after {time.monotonic() - started:.1f} s")


def test_concurrent_wrong_pins_are_counted_before_they_are_checked(unit) -> None:
    with httpx.Client(base_url=unit.url) as first:
        token = csrf_of(first.get("/agent").text)
        cookies = dict(first.cookies)
    guesses = 60
    codes: collections.Counter[int] = collections.Counter()
    start = threading.Barrier(guesses)

    def guess(number: int) -> None:
        with httpx.Client(base_url=unit.url, cookies=cookies, timeout=60) as client:
            start.wait()
            answer = client.post(
                "/agent/login",  # one id each: only the gate-wide throttle applies
                data={"csrf": token, "agent_id": f"X{number}", "credential": "000000"},
            )
            codes[answer.status_code] += 1

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == {401: THROTTLE_FAILURES, 429: guesses - THROTTLE_FAILURES}


def test_wrong_pins_from_the_network_leave_the_units_own_station(unit) -> None:
    with client_from(unit.url, "127.0.0.2") as sprayer:
        token = csrf_of(sprayer.get("/agent").text)
        for number in range(THROTTLE_FAILURES):
            sprayer.post(
                "/agent/login",
                data={"csrf": token, "agent_id": f"X{number}", "credential": "000000"},
            )
    with client_from(unit.url, "127.0.0.3") as elsewhere:  # the network's throttle holds
        token = csrf_of(elsewhere.get("/agent").text)
        answer = elsewhere.post(
            "/agent/login", data={"csrf": token, "agent_id": AGENT, "credential": PIN}
        )
        assert answer.status_code == 429
    with httpx.Client(base_url=unit.url) as station:  # the unit's own screen
        signed_in(station)

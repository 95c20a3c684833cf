"""A re-keyed matching service, through real gRPC and the real servicer: the unit's
pinned sealing or signing key no longer fits, so the verify fails (the traveller is
referred) and the journal says once, at ERROR, that only a re-enrolment helps."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.errors import MatchingUnavailable
from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.errors import VerdictRejected
from gate_contract.keys import PkiLayout, load_private, write_public_key
from gate_contract.sealing import seal_into, sealed_size
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.gallery import Gallery
from matching_service.server import start_server
from matching_service.servicer import MatchingService
from testbed.testing import FLIGHT
from tests.support import copy_layout

STALE = "re-enrolled (`gatectl provision --rotate`"


@pytest.fixture(scope="module")
def port(pki, tmp_path_factory) -> Iterator[int]:
    service = MatchingService(
        Gallery(tmp_path_factory.mktemp("rekeyed") / "gallery.sqlite"),
        None,
        load_private(pki.sealing_key),
        load_private(pki.signing_key),
    )
    server, port = start_server(service, pki)
    yield port
    server.stop(grace=None)


def _client(port: int, layout: PkiLayout) -> MatchingClient:
    client = MatchingClient(f"localhost:{port}", layout, DEV_DEVICE_ID, deadline_s=5)
    client.open_session(FLIGHT)
    return client


def _verify(client: MatchingClient):
    capture_id, plain = os.urandom(8).hex(), b"\xff\xd8 jpeg"
    sealed, at_ms = bytearray(sealed_size(len(plain))), now_ms()
    seal_into(sealed, plain, client.sealing_key, client.binding(capture_id, at_ms))
    return client.verify(capture_id, at_ms, sealed)


def _stale_errors(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and STALE in (r.getMessage())
    ]


def test_a_new_sealing_key_refers_and_says_to_re_enrol(port, pki, tmp_path, caplog) -> None:
    unit = copy_layout(pki, tmp_path / "unit")  # pinned a key the service no longer holds
    write_public_key(unit.sealing_public, X25519PrivateKey.generate().public_key())
    client = _client(port, unit)
    try:
        for _ in range(2):
            with pytest.raises(MatchingUnavailable, match="FAILED_PRECONDITION"):
                _verify(client)
    finally:
        client.close()
    errors = _stale_errors(caplog)
    assert len(errors) == 1, errors  # once, not per traveller
    assert "cannot open captures" in errors[0]


def test_a_new_signing_key_refers_and_says_to_re_enrol(port, pki, tmp_path, caplog) -> None:
    unit = copy_layout(pki, tmp_path / "unit")
    write_public_key(unit.signing_public, Ed25519PrivateKey.generate().public_key())
    client = _client(port, unit)
    try:
        with pytest.raises(VerdictRejected, match="unknown key id"):
            _verify(client)
    finally:
        client.close()
    errors = _stale_errors(caplog)
    assert len(errors) == 1 and "signs verdicts" in errors[0], errors


def test_the_pinned_keys_that_fit_say_nothing(port, pki, caplog) -> None:
    client = _client(port, pki)
    try:
        assert _verify(client).capture_id
    finally:
        client.close()
    assert not _stale_errors(caplog)

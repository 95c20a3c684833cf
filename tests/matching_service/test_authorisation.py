"""A device may open sessions only for flights departing where it is enrolled.

The attack this reproduces: any enrolled device could open a session on any flight and
run 1:N searches against that flight's gallery. The scope (airport, gates) is written into
the device certificate by the CA at enrollment and checked on every OpenSession.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import MatchingUnavailable
from appliance.matching.client import MatchingClient
from gate_contract.keys import DeviceScope, load_private, write_device_layout
from matching_service.audit import AuditLog
from matching_service.dev_ca import issue_device
from matching_service.gallery import Gallery
from matching_service.server import service_from_pki, start_server
from testbed.testing import FLIGHT


@pytest.fixture
def service(pki, tmp_path):
    service = service_from_pki(pki, Gallery(tmp_path / "g.sqlite"), None, audit=AuditLog())
    server, port = start_server(service, pki)
    yield service, f"localhost:{port}"
    server.stop(grace=None)


def _client(target, layout, device_id) -> MatchingClient:
    return MatchingClient(target, layout, device_id, deadline_s=5, retries=0)


@pytest.mark.parametrize(
    ("scope", "flight"),
    [
        (DeviceScope("LAX"), replace(FLIGHT, departure_airport="JFK")),  # another airport
        (DeviceScope("LAX", ("B40",)), FLIGHT),  # FLIGHT boards at gate B42
    ],
)
def test_a_session_outside_the_device_scope_is_refused(service, pki, tmp_path, scope, flight):
    servicer, target = service
    layout = issue_device(pki, tmp_path / "dev", "gate-lax-0007", scope=scope)
    client = _client(target, layout, "gate-lax-0007")
    try:
        with pytest.raises(MatchingUnavailable, match="PERMISSION_DENIED") as refused:
            client.open_session(flight)
        assert "enrolled for LAX" in str(refused.value)
        event = servicer.audit.events("flight_not_authorised")[-1]
        assert event.device_id == "gate-lax-0007" and event.status == "PERMISSION_DENIED"
    finally:
        client.close()


def test_the_same_device_may_open_its_own_flight(service, pki, tmp_path):
    _, target = service
    layout = issue_device(pki, tmp_path / "dev", "gate-lax-0008", scope=DeviceScope("LAX"))
    client = _client(target, layout, "gate-lax-0008")
    try:
        assert client.open_session(FLIGHT).session_id
    finally:
        client.close()


def test_a_certificate_without_a_scope_opens_no_session(service, pki, tmp_path):
    """A certificate the CA signed without a scope (e.g. before scopes existed)."""
    servicer, target = service
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gate-old-0001")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(load_private(pki.ca_key), hashes.SHA256())
    )
    layout = write_device_layout(
        tmp_path / "old",
        device_key=key,
        certificate_chain_pem=cert.public_bytes(serialization.Encoding.PEM),
        ca_pem=pki.ca_cert.read_bytes(),
        sealing_public_pem=pki.sealing_public.read_bytes(),
        signing_public_pem=pki.signing_public.read_bytes(),
    )
    client = _client(target, layout, "gate-old-0001")
    try:
        with pytest.raises(MatchingUnavailable, match="PERMISSION_DENIED"):
            client.open_session(FLIGHT)
        assert servicer.audit.events("flight_not_authorised")[-1].device_id == "gate-old-0001"
    finally:
        client.close()

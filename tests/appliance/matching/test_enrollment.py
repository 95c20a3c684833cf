"""Enrollment end to end: token + CSR on the server-TLS port, then a session over mTLS."""

from __future__ import annotations

import logging

import grpc
import pytest
from cryptography import x509

from appliance.errors import EnrollmentFailed
from appliance.matching.client import MatchingClient
from appliance.matching.enrollment import enroll
from gate_contract.clock import now_ms
from gate_contract.keys import DeviceScope, load_private, make_csr
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb, pb_grpc
from matching_service.audit import AuditLog
from matching_service.dev_ca import create_dev_pki
from matching_service.enrollment import EnrollmentService, EnrollmentTokens, start_enrollment_server
from matching_service.errors import TokenRefused
from matching_service.gallery import Gallery
from matching_service.limits import RateLimit
from matching_service.server import start_server
from matching_service.servicer import MatchingService
from testbed.testing import FLIGHT


class Clock:
    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def stack(pki, tmp_path_factory):
    work = tmp_path_factory.mktemp("enrollment")
    audit = AuditLog(work / "audit.sqlite")
    clock = Clock()
    tokens = EnrollmentTokens(work / "tokens.sqlite", clock_ms=clock)
    matching = MatchingService(
        Gallery(work / "g.sqlite"),
        None,
        load_private(pki.sealing_key),
        load_private(pki.signing_key),
        audit=audit,
    )
    server, port = start_server(matching, pki)
    # Generous limits: this module enrolls many devices from one address in seconds.
    many = RateLimit(per_key_rate=100.0, per_key_burst=1000, total_rate=100.0, total_burst=1000)
    enrollment = EnrollmentService(pki, tokens, audit=audit, attempts=many)
    enroll_server, enroll_port = start_enrollment_server(enrollment, pki)

    class Stack:
        pass

    s = Stack()
    s.pki, s.audit, s.clock, s.tokens = pki, audit, clock, tokens
    s.matching, s.port, s.enroll_port = matching, port, enroll_port
    s.enroll_target = f"localhost:{enroll_port}"
    s.ca_pem = pki.ca_cert.read_bytes()
    yield s
    enroll_server.stop(grace=None)
    server.stop(grace=None)


def test_new_device_enrolls_and_then_opens_a_session_over_mtls(stack, tmp_path):
    token = stack.tokens.issue("gate-new-0100", ttl_s=600, scope=DeviceScope("LAX"))
    layout = enroll(stack.enroll_target, stack.ca_pem, token, "gate-new-0100", tmp_path / "dev")
    cert = x509.load_pem_x509_certificate(layout.device_cert.read_bytes())
    assert cert.subject.rfc4514_string() == "OU=airport=LAX,CN=gate-new-0100"
    assert DeviceScope.of(cert) == DeviceScope("LAX")
    assert layout.ca_cert.read_bytes() == stack.ca_pem
    assert (layout.device_key.stat().st_mode & 0o777) == 0o600
    assert not layout.ca_key.exists() and not layout.sealing_key.exists()

    client = MatchingClient(f"localhost:{stack.port}", layout, "gate-new-0100", deadline_s=5)
    try:
        assert client.open_session(FLIGHT).session_id
        plain = b"payload"
        sealed = bytearray(sealed_size(len(plain)))
        at = now_ms()
        seal_into(sealed, plain, client.sealing_key, client.binding("cap-enrolled", at))
        verdict = client.verify("cap-enrolled", at, sealed)  # signature checked inside
        assert verdict.decision == pb.GALLERY_NOT_READY
        assert client.sealing_key.public_bytes_raw() == (
            load_private(stack.pki.sealing_key).public_key().public_bytes_raw()
        )
    finally:
        client.close()
    events = stack.audit.events("device_enrolled")
    assert events[-1].device_id == "gate-new-0100"


def test_token_is_single_use(stack, tmp_path):
    token = stack.tokens.issue("gate-new-0101", scope=DeviceScope("LAX"))
    enroll(stack.enroll_target, stack.ca_pem, token, "gate-new-0101", tmp_path / "a")
    with pytest.raises(EnrollmentFailed, match="token has already been used"):
        enroll(stack.enroll_target, stack.ca_pem, token, "gate-new-0101", tmp_path / "b")
    assert stack.audit.events("token_already_used")[-1].device_id == "gate-new-0101"
    assert not (tmp_path / "b").exists()


def test_token_expires(stack, tmp_path):
    token = stack.tokens.issue("gate-new-0102", ttl_s=60, scope=DeviceScope("LAX"))
    stack.clock.now += 61_000
    try:
        with pytest.raises(EnrollmentFailed, match="token has expired"):
            enroll(stack.enroll_target, stack.ca_pem, token, "gate-new-0102", tmp_path / "a")
    finally:
        stack.clock.now -= 61_000
    assert stack.audit.events("token_expired")[-1].device_id == "gate-new-0102"


def test_token_is_bound_to_its_device(stack, tmp_path):
    token = stack.tokens.issue("gate-new-0103", scope=DeviceScope("LAX"))
    with pytest.raises(EnrollmentFailed, match="token was issued for another device"):
        enroll(stack.enroll_target, stack.ca_pem, token, "gate-thief-0001", tmp_path / "a")
    assert stack.audit.events("token_wrong_device")
    with pytest.raises(EnrollmentFailed, match="token is not known"):
        enroll(stack.enroll_target, stack.ca_pem, "made-up-token", "gate-x", tmp_path / "b")
    assert stack.audit.events("token_unknown")


def test_csr_must_name_the_device(stack):
    token = stack.tokens.issue("gate-new-0104", scope=DeviceScope("LAX"))
    _, csr_pem = make_csr("gate-somebody-else")
    with grpc.secure_channel(
        stack.enroll_target, grpc.ssl_channel_credentials(stack.ca_pem)
    ) as channel:
        stub = pb_grpc.EnrollmentStub(channel)
        for csr in (csr_pem, b"garbage", b""):
            with pytest.raises(grpc.RpcError) as err:
                stub.Enroll(
                    pb.EnrollRequest(
                        enrollment_token=token, device_id="gate-new-0104", csr_pem=csr
                    ),
                    timeout=5,
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The refusals above did not use the token up.
        _, good = make_csr("gate-new-0104")
        answer = stub.Enroll(
            pb.EnrollRequest(enrollment_token=token, device_id="gate-new-0104", csr_pem=good),
            timeout=5,
        )
        assert answer.signing_key_id == stack.matching.signing_key_id
        assert answer.sealing_key_id == stack.matching.sealing_key_id
        # Only Enroll is served there: the matching API needs mutual TLS.
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.MatchingStub(channel).OpenSession(pb.OpenSessionRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(stack.audit.events("bad_csr")) >= 3


def test_matching_port_needs_a_client_certificate(stack):
    with grpc.secure_channel(
        f"localhost:{stack.port}", grpc.ssl_channel_credentials(stack.ca_pem)
    ) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.MatchingStub(channel).OpenSession(pb.OpenSessionRequest(), timeout=3)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_enrollment_server_must_chain_to_the_provisioned_ca(stack, tmp_path):
    rogue = create_dev_pki(tmp_path / "rogue")
    token = stack.tokens.issue("gate-new-0105", scope=DeviceScope("LAX"))
    with pytest.raises(EnrollmentFailed):
        enroll(
            stack.enroll_target,
            rogue.ca_cert.read_bytes(),
            token,
            "gate-new-0105",
            tmp_path / "d",
            deadline_s=3,
        )


def test_tokens_unit(tmp_path):
    clock = Clock()
    tokens = EnrollmentTokens(tmp_path / "t.sqlite", clock_ms=clock)
    token = tokens.issue("gate-1", ttl_s=10, scope=DeviceScope("LAX"))
    assert token not in (tmp_path / "t.sqlite").read_bytes().decode("latin-1")
    with pytest.raises(TokenRefused) as err:
        tokens.consume(token, "gate-2")
    assert err.value.reason == "wrong_device"
    tokens.consume(token, "gate-1")
    with pytest.raises(TokenRefused) as err:
        tokens.consume(token, "gate-1")
    assert err.value.reason == "already_used"
    with pytest.raises(ValueError):
        tokens.issue("", ttl_s=10, scope=DeviceScope("LAX"))


def test_every_link_of_a_returned_chain_must_lead_to_the_provisioned_ca(pki, tmp_path):
    """A leaf issued by a rogue intermediate is refused even if the CA is the right one."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from appliance.matching.enrollment import _check_enrollment

    def cert(subject, public_key, issuer_name, issuer_key, ca):
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue intermediate")])
    rogue = cert("rogue intermediate", rogue_key.public_key(), rogue_name, rogue_key, True)
    device_key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("gate-new-0009", device_key.public_key(), rogue_name, rogue_key, False)
    pem = serialization.Encoding.PEM
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    signing = load_private(pki.signing_key).public_key().public_bytes(pem, public)
    sealing = load_private(pki.sealing_key).public_key().public_bytes(pem, public)
    response = pb.EnrollResponse(
        certificate_chain_pem=leaf.public_bytes(pem) + rogue.public_bytes(pem),
        ca_certificate_pem=pki.ca_cert.read_bytes(),
        sealing_public_key_pem=sealing,
        signing_public_key_pem=signing,
    )
    with pytest.raises(EnrollmentFailed, match="does not chain"):
        _check_enrollment(response, pki.ca_cert.read_bytes(), "gate-new-0009", device_key)


def test_token_guessing_is_rate_limited_with_one_log_line_per_burst(pki, tmp_path, caplog):
    """The attack: enrollment needs no client certificate, so anyone on the network could
    guess tokens as fast as the server answers (711/s), each an audit row and a WARNING."""
    audit = AuditLog(tmp_path / "audit.sqlite")
    tokens = EnrollmentTokens(tmp_path / "tokens.sqlite")
    server, port = start_enrollment_server(EnrollmentService(pki, tokens, audit=audit), pki)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
    statuses = []
    try:
        with (
            caplog.at_level(logging.WARNING, logger="gate.matcher.enrollment"),
            grpc.secure_channel(f"localhost:{port}", credentials) as channel,
        ):
            stub = pb_grpc.EnrollmentStub(channel)
            for guess in range(200):
                request = pb.EnrollRequest(
                    enrollment_token=f"{guess:032x}", device_id="gate-x", csr_pem=b"x"
                )
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Enroll(request, timeout=5)
                statuses.append(refused.value.code())
    finally:
        server.stop(grace=None)
    limited = statuses.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert limited >= 180, statuses[:20]  # only the first burst reached the token check
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) <= 5, [r.getMessage() for r in lines]
    assert len(audit.events("enrollment_rate_limited")) <= 2

"""Unit and property tests for gate_contract.verdicts (signed verdicts)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gate_contract.errors import VerdictRejected
from gate_contract.verdicts import CLOCK_WINDOW_MS, check_verdict, signing_key_id, verdict_message
from gate_contract.wire import pb

SERVICE_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
CAPTURE = "5f0f9a0e-7c43-4b7e-8e0c-1d2f3a4b5c6d"
DEVICE = "gate-b42-01"
NOW = 1_795_000_000_000


def make_verdict(
    *,
    key: Ed25519PrivateKey = SERVICE_KEY,
    capture_id: str = CAPTURE,
    device_id: str = DEVICE,
    decision: int = pb.MATCH,
    token: str = "tok-7f3a",
    issued_at_ms: int = NOW,
    key_id: str | None = None,
) -> pb.Verdict:
    verdict = pb.Verdict(
        capture_id=capture_id,
        device_id=device_id,
        decision=decision,
        traveller_token=token,
        issued_at_ms=issued_at_ms,
        signing_key_id=key_id if key_id is not None else signing_key_id(key.public_key()),
    )
    verdict.signature = key.sign(verdict_message(verdict))
    return verdict


def check(verdict: pb.Verdict, *, now_ms: int = NOW, capture_id=CAPTURE, device_id=DEVICE):
    check_verdict(
        verdict,
        SERVICE_KEY.public_key(),
        capture_id=capture_id,
        device_id=device_id,
        now_ms=now_ms,
    )


def test_valid_verdict_is_accepted() -> None:
    check(make_verdict())


@pytest.mark.parametrize("decision", [pb.MATCH, pb.NO_MATCH, pb.NOT_ON_FLIGHT, pb.IMAGE_UNUSABLE])
def test_each_decision_is_accepted_when_signed(decision: int) -> None:
    check(make_verdict(decision=decision))


def test_verdict_survives_wire_round_trip() -> None:
    verdict = pb.Verdict.FromString(make_verdict().SerializeToString())
    check(verdict)


def test_forged_signature_is_rejected() -> None:
    verdict = make_verdict()
    signature = bytearray(verdict.signature)
    signature[0] ^= 0x01
    verdict.signature = bytes(signature)
    with pytest.raises(VerdictRejected, match="signature"):
        check(verdict)


def test_empty_signature_is_rejected() -> None:
    verdict = make_verdict()
    verdict.signature = b""
    with pytest.raises(VerdictRejected, match="signature"):
        check(verdict)


def test_signature_by_other_key_under_right_key_id_is_rejected() -> None:
    verdict = make_verdict(key=OTHER_KEY, key_id=signing_key_id(SERVICE_KEY.public_key()))
    with pytest.raises(VerdictRejected, match="signature"):
        check(verdict)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decision", pb.NO_MATCH),
        ("traveller_token", "tok-other"),
        ("capture_id", "5f0f9a0e-7c43-4b7e-8e0c-000000000000"),
        ("device_id", "gate-b42-02"),
        ("issued_at_ms", NOW + 1),
    ],
)
def test_field_changed_after_signing_is_rejected(field: str, value: object) -> None:
    verdict = make_verdict()
    setattr(verdict, field, value)
    with pytest.raises(VerdictRejected):
        # Check against the altered ids, so only the signature can catch the change.
        check(verdict, capture_id=verdict.capture_id, device_id=verdict.device_id)


def test_denial_turned_into_match_is_rejected() -> None:
    verdict = make_verdict(decision=pb.NOT_ON_FLIGHT)
    verdict.decision = pb.MATCH
    with pytest.raises(VerdictRejected, match="signature"):
        check(verdict)


def test_wrong_key_id_is_rejected() -> None:
    verdict = make_verdict(key_id="0123456789abcdef")
    with pytest.raises(VerdictRejected, match="unknown key id"):
        check(verdict)


def test_verdict_from_other_key_is_rejected() -> None:
    with pytest.raises(VerdictRejected, match="unknown key id"):
        check(make_verdict(key=OTHER_KEY))


def test_other_capture_is_rejected() -> None:
    verdict = make_verdict(capture_id="another-capture")
    with pytest.raises(VerdictRejected, match="another capture"):
        check(verdict)


def test_other_device_is_rejected() -> None:
    verdict = make_verdict(device_id="gate-c01-01")
    with pytest.raises(VerdictRejected, match="another capture"):
        check(verdict)


@pytest.mark.parametrize("offset", [0, 1, -1, CLOCK_WINDOW_MS, -CLOCK_WINDOW_MS])
def test_issued_inside_clock_window_is_accepted(offset: int) -> None:
    check(make_verdict(issued_at_ms=NOW + offset))


@pytest.mark.parametrize("offset", [CLOCK_WINDOW_MS + 1, -CLOCK_WINDOW_MS - 1, 10**9, -NOW])
def test_issued_outside_clock_window_is_rejected(offset: int) -> None:
    with pytest.raises(VerdictRejected, match="clock window"):
        check(make_verdict(issued_at_ms=NOW + offset))


@settings(max_examples=100, deadline=None)
@given(offset=st.integers(-(10**10), 10**10))
def test_clock_window_property(offset: int) -> None:
    verdict = make_verdict(issued_at_ms=NOW + offset)
    if abs(offset) <= CLOCK_WINDOW_MS:
        check(verdict)
    else:
        with pytest.raises(VerdictRejected):
            check(verdict)


def test_message_covers_every_signed_field_and_not_the_signature() -> None:
    base = make_verdict()
    message = verdict_message(base)
    for field, value in [
        ("capture_id", "x"),
        ("device_id", "x"),
        ("decision", pb.NO_MATCH),
        ("traveller_token", "x"),
        ("issued_at_ms", 1),
        ("signing_key_id", "x"),
    ]:
        changed = pb.Verdict()
        changed.CopyFrom(base)
        setattr(changed, field, value)
        assert verdict_message(changed) != message, field
    resigned = pb.Verdict()
    resigned.CopyFrom(base)
    resigned.signature = b"\x00" * 64
    assert verdict_message(resigned) == message


texts = st.text(max_size=12)
verdict_fields = st.tuples(
    texts,
    texts,
    st.sampled_from([int(v) for v in pb.Decision.values()]),
    texts,
    st.integers(-(2**63), 2**63 - 1),
    texts,
)


def _verdict(fields: tuple) -> pb.Verdict:
    capture_id, device_id, decision, token, issued, kid = fields
    return pb.Verdict(
        capture_id=capture_id,
        device_id=device_id,
        decision=decision,
        traveller_token=token,
        issued_at_ms=issued,
        signing_key_id=kid,
    )


@settings(max_examples=300, deadline=None)
@given(first=verdict_fields, second=verdict_fields)
def test_verdict_message_is_injective(first: tuple, second: tuple) -> None:
    same = verdict_message(_verdict(first)) == verdict_message(_verdict(second))
    assert same == (first == second)


@settings(max_examples=200, deadline=None)
@given(joined=st.text(min_size=1, max_size=30), data=st.data())
def test_shifting_chars_between_capture_and_device_changes_message(
    joined: str, data: st.DataObject
) -> None:
    cut_a = data.draw(st.integers(0, len(joined)), label="cut_a")
    cut_b = data.draw(st.integers(0, len(joined)).filter(lambda c: c != cut_a), label="cut_b")
    a = _verdict((joined[:cut_a], joined[cut_a:], pb.MATCH, "t", NOW, "k"))
    b = _verdict((joined[:cut_b], joined[cut_b:], pb.MATCH, "t", NOW, "k"))
    assert verdict_message(a) != verdict_message(b)


def test_shifted_ids_keep_signature_from_verifying() -> None:
    verdict = make_verdict(capture_id="abc", device_id="def")
    verdict.capture_id, verdict.device_id = "abcd", "ef"
    with pytest.raises(VerdictRejected, match="signature"):
        check(verdict, capture_id="abcd", device_id="ef")

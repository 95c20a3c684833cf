"""The appliance's side of the matching contract: mTLS channel, sealed upload, checked verdict.

A verdict is returned only after its signature, capture id, device id and time have
been checked (``appliance.contract``); anything else raises ``VerdictRejected`` and
the gate stays shut. Every call has a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from gate.v1 import matching_pb2 as pb
from gate.v1 import matching_pb2_grpc as pb_grpc

from appliance.contract import VerdictRejected, check_verdict
from appliance.pki import PkiLayout, load_sealing_public, load_signing_public
from appliance.sealing import key_id
from appliance.transaction import PurgeRecord, now_ms

CHUNK_BYTES = 64 * 1024


class MatchingUnavailable(RuntimeError):
    """The matching service could not be reached or refused the call."""


@dataclass(frozen=True)
class FlightInfo:
    carrier: str
    flight_number: str
    date: str
    departure_airport: str
    gate: str = ""


class MatchingClient:
    def __init__(
        self, target: str, pki: PkiLayout, device_id: str, *, deadline_s: float = 3.0
    ) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_cert.read_bytes(),
            private_key=pki.device_key.read_bytes(),
            certificate_chain=pki.device_cert.read_bytes(),
        )
        self._channel = grpc.secure_channel(target, credentials)
        self._stub = pb_grpc.MatchingStub(self._channel)
        self.device_id = device_id
        self.sealing_key = load_sealing_public(pki.sealing_public)
        self._sealing_kid = key_id(self.sealing_key)
        self._signing_key = load_signing_public(pki.signing_public)
        self._deadline = deadline_s
        self.session_id = ""

    def open_session(self, flight: FlightInfo) -> pb.OpenSessionResponse:
        request = pb.OpenSessionRequest(
            device_id=self.device_id,
            flight=pb.Flight(
                carrier=flight.carrier,
                flight_number=flight.flight_number,
                date=flight.date,
                departure_airport=flight.departure_airport,
                gate=flight.gate,
            ),
        )
        try:
            response = self._stub.OpenSession(request, timeout=self._deadline, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise MatchingUnavailable(
                f"open session failed: {exc.code().name}: {exc.details()}"
            ) from exc
        self.session_id = response.session_id
        return response

    def _chunks(self, header: pb.CaptureHeader, sealed: bytearray) -> Iterator[pb.VerifyChunk]:
        yield pb.VerifyChunk(header=header)
        view = memoryview(sealed)
        for start in range(0, len(sealed), CHUNK_BYTES):
            yield pb.VerifyChunk(sealed_data=bytes(view[start : start + CHUNK_BYTES]))

    def verify(
        self, capture_id: str, captured_at_ms: int, sealed: bytearray, boarding_pass: str = ""
    ) -> pb.Verdict:
        """Send one sealed capture; return its verdict only if it checks out."""
        header = pb.CaptureHeader(
            session_id=self.session_id,
            capture_id=capture_id,
            device_id=self.device_id,
            captured_at_ms=captured_at_ms,
            sealed_size=len(sealed),
            sealing_key_id=self._sealing_kid,
            boarding_pass=boarding_pass,
        )
        try:
            verdict = self._stub.Verify(self._chunks(header, sealed), timeout=self._deadline)
        except grpc.RpcError as exc:
            raise MatchingUnavailable(f"verify failed: {exc.code().name}: {exc.details()}") from exc
        check_verdict(
            verdict,
            self._signing_key,
            capture_id=capture_id,
            device_id=self.device_id,
            now_ms=now_ms(),
        )
        return verdict

    def report_purge(self, record: PurgeRecord) -> bool:
        """Tell the service this capture is purged; False if it could not be told now."""
        receipt = pb.PurgeReceipt(
            device_id=record.device_id,
            capture_id=record.capture_id,
            sealed_sha256=record.sealed_sha256,
            purged_at_ms=record.purged_at_ms,
            reason=record.reason,
        )
        try:
            return self._stub.ReportPurge(receipt, timeout=self._deadline).recorded
        except grpc.RpcError:
            return False

    def close(self) -> None:
        self._channel.close()


__all__ = ["FlightInfo", "MatchingClient", "MatchingUnavailable", "VerdictRejected"]

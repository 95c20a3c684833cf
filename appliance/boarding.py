"""One traveller at the gate, from the first frame to the gate's answer and the purge.

Order matters for privacy and speed: the verdict is checked, then every buffer of the
capture is purged, then the relay is driven. Whatever goes wrong, the transaction is
purged, a ledger record is written and the gate is left shut. A shutdown signal
(``appliance.hardening.ShutdownRequested``), KeyboardInterrupt or SystemExit in the
middle of a traveller purges and records the transaction (reason "shutdown" or
"interrupted: ...") and is then re-raised.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gate.v1 import matching_pb2 as pb

from appliance.camera import FrameSource
from appliance.capture import NoSelection, select_frame
from appliance.contract import VerdictRejected
from appliance.detector import FaceDetector
from appliance.gate import GateController
from appliance.hardening import ShutdownRequested
from appliance.ledger import PurgeLedger
from appliance.matching_client import MatchingClient, MatchingUnavailable
from appliance.payload import EncodeError, seal_capture
from appliance.quality import QualityThresholds
from appliance.transaction import CaptureTransaction, PurgeRecord, now_ms

log = logging.getLogger("gate.boarding")


@dataclass
class TravellerOutcome:
    outcome: str  # granted, referred, manual_check, no_face
    reason: str
    capture_id: str = ""
    frame_sent: bool = False
    purge: PurgeRecord | None = None
    e2e_ms: float | None = None  # face in view -> relay command written
    frames_seen: int = 0


class BoardingGate:
    def __init__(
        self,
        detector: FaceDetector,
        client: MatchingClient,
        gate: GateController,
        ledger: PurgeLedger,
        *,
        limits: QualityThresholds | None = None,
        capture_window_frames: int = 45,
    ) -> None:
        self.detector = detector
        self.client = client
        self.gate = gate
        self.ledger = ledger
        self.limits = limits or QualityThresholds()
        self.window = capture_window_frames

    def process(self, source: FrameSource, boarding_pass: str = "") -> TravellerOutcome:
        """Run one capture window for the traveller in front of ``source``."""
        if self.gate.opt_out_pending():
            self.gate.acknowledge_opt_out()
            return TravellerOutcome("manual_check", "opted out before capture")
        self.gate.capturing()
        transaction = CaptureTransaction(self.client.device_id)
        try:
            watched = _Watched(source, transaction)
            return self._capture_and_match(transaction, watched, boarding_pass)
        except Exception as exc:  # the gate must survive anything one traveller brings
            log.error("transaction %s failed: %s", transaction.capture_id, type(exc).__name__)
            record = self._finish_after_fault(
                transaction, "referred", f"internal error: {type(exc).__name__}"
            )
            return TravellerOutcome(
                "referred",
                "internal error",
                transaction.capture_id,
                bool(transaction.sent_at_ms),
                record,
            )
        except BaseException as exc:  # shutdown signal, KeyboardInterrupt, SystemExit
            reason = (
                "shutdown"
                if isinstance(exc, ShutdownRequested)
                else f"interrupted: {type(exc).__name__}"
            )
            log.warning("transaction %s stopped: %s", transaction.capture_id, reason)
            self._finish_after_fault(transaction, "referred", reason, report=False)
            raise

    def _capture_and_match(
        self, tx: CaptureTransaction, source: FrameSource, boarding_pass: str
    ) -> TravellerOutcome:
        started = time.perf_counter()
        selection = select_frame(
            source,
            self.detector,
            max_frames=self.window,
            limits=self.limits,
            opted_out=self.gate.opt_out_pending,
        )
        if isinstance(selection, NoSelection):
            return self._no_selection(tx, selection)
        face_in_view = selection.first_face_at or started
        tx.track(selection.frame)
        tx.captured_at_ms = now_ms()
        try:
            sealed = seal_capture(
                tx, selection.frame, selection.report.face, self.client.sealing_key
            )
        except EncodeError as exc:
            self._finish(tx, "referred", f"encode failed: {exc}")
            self.gate.refer()
            return TravellerOutcome("referred", str(exc), tx.capture_id, purge=tx.record)
        if self.gate.opt_out_pending():
            return self._opted_out_during_capture(tx, selection.frames_seen)
        tx.sent_at_ms = now_ms()
        try:
            verdict = self.client.verify(tx.capture_id, tx.captured_at_ms, sealed, boarding_pass)
        except (MatchingUnavailable, VerdictRejected) as exc:
            record = self._finish(tx, "referred", f"error: {exc}")
            self.gate.refer()
            return TravellerOutcome(
                "referred", str(exc), tx.capture_id, True, record, frames_seen=selection.frames_seen
            )
        tx.verdict_at_ms = now_ms()
        decision = pb.Decision.Name(verdict.decision).lower()
        if verdict.decision == pb.MATCH:
            tx.purge("granted", "verdict")
            self.gate.grant()
            outcome = "granted"
        else:
            tx.purge("referred", "verdict")
            self.gate.refer()
            outcome = "referred"
        e2e_ms = (time.perf_counter() - face_in_view) * 1000
        record = self._finish(tx, outcome, "verdict")
        return TravellerOutcome(
            outcome, decision, tx.capture_id, True, record, e2e_ms, selection.frames_seen
        )

    def _opted_out_during_capture(
        self, tx: CaptureTransaction, frames_seen: int
    ) -> TravellerOutcome:
        """The button was pressed mid-capture: purge, send nothing, agent checks documents."""
        record = self._finish(tx, "manual_check", "opt_out")
        self.gate.acknowledge_opt_out()
        return TravellerOutcome(
            "manual_check",
            "opted out during capture",
            tx.capture_id,
            purge=record,
            frames_seen=frames_seen,
        )

    def _no_selection(self, tx: CaptureTransaction, selection: NoSelection) -> TravellerOutcome:
        if selection.reason == "opted_out":
            return self._opted_out_during_capture(tx, selection.frames_seen)
        if selection.reason == "source_ended":
            log.error("camera delivered no frame; referring to the agent")
            self.gate.refer()
            return TravellerOutcome("referred", "camera delivered no frame")
        if selection.reason == "no_face":
            self.gate.ready()
            return TravellerOutcome("no_face", "nobody in view", frames_seen=selection.frames_seen)
        record = self._finish(tx, "referred", "no usable face")
        self.gate.refer()
        return TravellerOutcome(
            "referred",
            f"no usable face ({selection.last_feedback})",
            tx.capture_id,
            purge=record,
            frames_seen=selection.frames_seen,
        )

    def _finish(
        self, tx: CaptureTransaction, outcome: str, reason: str, *, report: bool = True
    ) -> PurgeRecord:
        """Purge (if not yet), write the ledger record (once) and tell the service."""
        record = tx.purge(outcome, reason)
        if not tx.recorded:
            self.ledger.append(record)
            tx.recorded = True
            if report and tx.sent_at_ms and not self.client.report_purge(record):
                log.warning(
                    "purge receipt for %s not delivered; the ledger holds it", tx.capture_id
                )
        return record

    def _finish_after_fault(
        self, tx: CaptureTransaction, outcome: str, reason: str, *, report: bool = True
    ) -> PurgeRecord | None:
        """The fault path: purge first whatever else fails, then record, then refer."""
        try:
            tx.purge(outcome, reason)
        except Exception as exc:  # the record is made even so; it is written below
            log.error("transaction %s: a buffer failed to zeroize: %s", tx.capture_id, exc)
        record = tx.record
        try:
            record = self._finish(tx, outcome, reason, report=report)
        except Exception as exc:
            log.error("transaction %s: purge record not written: %s", tx.capture_id, exc)
        try:
            self.gate.refer()
        except Exception as exc:
            log.error("transaction %s: gate did not take 'see agent': %s", tx.capture_id, exc)
        return record


class _Watched:
    """The camera as the transaction sees it: each frame read is held by the transaction."""

    def __init__(self, source: FrameSource, tx: CaptureTransaction) -> None:
        self._source = source
        self._tx = tx

    def read(self):
        frame = self._source.read()
        if frame is not None:
            self._tx.watch_frame(frame)
        return frame

    def close(self) -> None:
        self._source.close()

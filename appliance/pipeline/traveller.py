"""One traveller at the gate, from the first frame to the gate's answer and the purge.

Order matters for privacy and speed: the verdict is checked, then every buffer of the
capture is purged, then the relay is driven (or the traveller referred), then the
ledger record is written and the purge receipt handed to a background sender
(``appliance.matching.receipt_sender``): on a fault the traveller is referred before
anything else, and never waits on the disk or on a receipt to a dead matcher. Whatever
goes wrong, the transaction is purged, a ledger record is written and the gate is left
shut.

Every capture that leaves the unit is in the ledger: before the sealed frame is sent an
intent record is made durable (``PurgeLedger.open_intent``). If the ledger cannot make
records durable (disk full, I/O error) nothing is captured or sent and the traveller is
referred, until it can again. A shutdown signal
(``appliance.shutdown.ShutdownRequested``), KeyboardInterrupt or SystemExit in the
middle of a traveller purges and records the transaction (reason "shutdown" or
"interrupted: ...") and is then re-raised.

The capture is an :class:`appliance.vision.selection.FrameSelector` that follows the
traveller over consecutive ``process`` calls while the answer is "nobody yet" (no face,
or a traveller still approaching) and is reset once the traveller is decided; its
``add_observer`` gives a traveller display the face box, keypoints and feedback of each
frame (``appliance.vision.progress``). A frame accepted with exposure correction is sent
through the same tone curve it was measured with (``Selection.gamma``). Each face sent
is also read by a :class:`appliance.vision.colour_order.ColourOrderWatch`, which warns
when the camera seems to have swapped red and blue (blue faces, one after another).

The gate is told each step as an event of its state machine (``appliance.gate.machine``):
capture started, frame sent, the verdict or why there is none. While the capture and the
verify run, the gate may cancel them at any moment (opt-out button, agent, link lost):
the capture stops before the next frame, a verify in flight is cancelled, everything is
purged and nothing more is sent, not even the purge receipt. A verdict that does not come
within ``verdict_timeout_s`` refers the traveller; the gate never opens on a timeout.

A capture the matcher does not verify (no match, not on the flight, unusable) is not yet
a referral when ``SelectionRules.attempts`` allows another: its transaction ends (purged,
recorded as ``retaken``), the gate goes back to capturing, and the traveller in front
(by the selection rules, as for any capture) is captured again as they come nearer
(``FrameSelector.retake``), in a transaction of its own. If no bigger face comes, the
traveller is referred for the first verdict.

Listeners added with :meth:`TravellerPipeline.on_capture_progress` hear about every frame
the capture looks at (face position and quality feedback, never pixels); one that fails
is logged and never disturbs the capture.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.custody.ledger import PurgeLedger
from appliance.custody.payload import seal_capture
from appliance.custody.receipts import ReceiptQueue
from appliance.custody.transaction import CaptureTransaction, PurgeRecord
from appliance.errors import (
    EncodeError,
    LedgerError,
    MatchingFailure,
    MatchingUnavailable,
    VerifyCancelled,
)
from appliance.gate.boarded import BoardedTravellers, Claim
from appliance.gate.machine import Event, GateController, State
from appliance.gate.outcome import Outcome, TravellerOutcome
from appliance.log_context import capture_context
from appliance.matching.answers import Decision
from appliance.matching.client import MatchingClient
from appliance.matching.receipt_sender import ReceiptSender
from appliance.shutdown import ShutdownRequested, deferred_shutdown
from appliance.vision.camera import FrameSource
from appliance.vision.colour_order import ColourOrderWatch
from appliance.vision.detectors import Detector
from appliance.vision.progress import CaptureProgress
from appliance.vision.quality import QualityReport, QualityThresholds
from appliance.vision.selection import (
    DEFAULT_WINDOW_FRAMES,
    FrameSelector,
    NoSelection,
    NoSelectionReason,
    Selection,
    SelectionRules,
)
from gate_contract.clock import now_ms
from gate_contract.errors import VerdictRejected

log = logging.getLogger("gate.boarding")


_DECISION_EVENTS = {
    Decision.NO_MATCH: Event.NO_MATCH,
    Decision.NOT_ON_FLIGHT: Event.NOT_ON_FLIGHT,
    Decision.IMAGE_UNUSABLE: Event.UNUSABLE,
}


_Timing = tuple[float, float]  # (capture_ms, verify_ms) of one capture sent


@dataclass(frozen=True)
class _SecondLook:
    """A capture the matcher did not verify, ended and recorded; another one follows."""

    report: QualityReport  # the face sent (measures only): the next one must be bigger
    event: Event  # what the traveller is referred for if no better face comes
    decision: str
    capture_ids: tuple[str, ...]  # every capture sent for this traveller so far
    purge: PurgeRecord  # the last one's
    face_in_view: float  # perf_counter() when the traveller's face was first seen
    timings: tuple[_Timing, ...]  # of each capture sent so far


class TravellerPipeline:
    """Runs one traveller through capture, sealing, matching, purge and the gate."""

    def __init__(
        self,
        detector: Detector,
        client: MatchingClient,
        gate: GateController,
        ledger: PurgeLedger,
        *,
        limits: QualityThresholds | None = None,
        capture_window_frames: int = DEFAULT_WINDOW_FRAMES,
        rules: SelectionRules | None = None,
        verdict_timeout_s: float | None = None,
        boarded: BoardedTravellers | None = None,
        receipts: ReceiptSender | None = None,
    ) -> None:
        """``boarded`` is the flight's register of who boarded (a grant claims the
        traveller's token once); by default one of this pipeline's own. ``receipts``
        sends the purge receipts (the service gives it a durable queue); by default
        they are owed from memory."""
        self.client = client
        self.gate = gate
        self.ledger = ledger
        self.selector = FrameSelector(
            detector, limits or QualityThresholds(), rules, window_frames=capture_window_frames
        )
        self.verdict_timeout_s = verdict_timeout_s
        self.boarded = boarded or BoardedTravellers("")
        self.receipts = receipts or ReceiptSender(client.report_purge, ReceiptQueue(None))
        self.colour_order = ColourOrderWatch()
        self._colour_check_failed = False
        self._cancelled = gate.cancelled

    def on_capture_progress(self, callback: Callable[[CaptureProgress], object]) -> None:
        """Call ``callback`` for every frame a capture looks at (on the capture's thread;
        its exceptions are logged, never passed on to the capture)."""
        self.selector.add_observer(callback)

    def _check_colour_order(self, selection: Selection) -> None:
        """The camera's colour order, read from the face sent: a diagnostic, so a fault in
        it is logged once and never stops the capture."""
        try:
            self.colour_order.observe(selection.frame, selection.report.face)
        except Exception:
            if not self._colour_check_failed:
                log.exception("the camera colour-order check failed")
                self._colour_check_failed = True

    def _refer(self, event: Event, reason: str) -> None:
        self.gate.refer(reason, event)

    def process(self, source: FrameSource, boarding_pass: str = "") -> TravellerOutcome:
        """Run the traveller in front of ``source`` to the gate's answer: one capture
        window, or nobody yet (``NO_FACE``: the caller calls again); a capture the
        matcher does not verify is followed by a second look (``_SecondLook``), up to
        ``SelectionRules.attempts`` captures in all."""
        if self.gate.opt_out_pending():
            self.gate.acknowledge_opt_out()
            return TravellerOutcome(Outcome.MANUAL_CHECK, "opted out before capture")
        if self.gate.capturing() is False:  # the machine refused: no capture at all
            phase = self.gate.phase
            if phase is State.MANUAL_CHECK or self.gate.opt_out_pending():
                return TravellerOutcome(Outcome.MANUAL_CHECK, "awaiting the agent (opt-out)")
            return TravellerOutcome(Outcome.REFERRED, f"gate {phase.value}")
        if not self.ledger.durable and not self.ledger.retry():
            # No capture may leave while its record could not be kept.
            log.error("purge ledger not durable (%s): no capture", self.ledger.failure)
            self._refer(Event.ERROR, "purge ledger not durable")
            return TravellerOutcome(Outcome.REFERRED, "purge ledger not durable", event="error")
        look: _SecondLook | None = None
        while True:
            transaction = CaptureTransaction(self.client.device_id)
            result = self._transaction(transaction, source, boarding_pass, look)
            if not isinstance(result, _SecondLook):
                if result.outcome is not Outcome.NO_FACE:
                    self.selector.reset()  # this traveller is decided: the next starts afresh
                if look is not None and result.capture_id != look.capture_ids[-1]:
                    # the second look's own capture (sent or not) ends the traveller; a
                    # referral for the first verdict named the captures itself
                    result.earlier_capture_ids = look.capture_ids
                    result.earlier_timings = look.timings
                return result
            look = result

    def _transaction(
        self,
        transaction: CaptureTransaction,
        source: FrameSource,
        boarding_pass: str,
        look: _SecondLook | None,
    ) -> TravellerOutcome | _SecondLook:
        """One capture and its verdict; whatever happens, purged and recorded."""
        try:
            watched = _Watched(source, transaction)
            with capture_context(transaction.capture_id):
                return self._capture_and_match(transaction, watched, boarding_pass, look)
        except Exception as exc:  # the gate must survive anything one traveller brings
            self.selector.reset()
            log.error("transaction %s failed: %s", transaction.capture_id, type(exc).__name__)
            record = self._finish_after_fault(
                transaction, Outcome.REFERRED, f"internal error: {type(exc).__name__}"
            )
            return TravellerOutcome(
                Outcome.REFERRED,
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
            self.selector.reset()
            log.warning("transaction %s stopped: %s", transaction.capture_id, reason)
            self._finish_after_fault(transaction, Outcome.REFERRED, reason, report=False)
            raise

    def _capture_and_match(
        self,
        tx: CaptureTransaction,
        source: FrameSource,
        boarding_pass: str,
        look: _SecondLook | None,
    ) -> TravellerOutcome | _SecondLook:
        started = time.perf_counter()
        selection: Selection | NoSelection
        if look is None:
            selection = self.selector.select(source, opted_out=self._cancelled)
        else:
            selection = self.selector.retake(source, look.report, opted_out=self._cancelled)
        if isinstance(selection, NoSelection):
            if look is not None:
                return self._no_second_look(tx, selection, look)
            return self._no_selection(tx, selection)
        face_in_view = look.face_in_view if look else (selection.first_face_at or started)
        frames = selection.frames_seen
        # The frame sent may be one read a moment ago (the best of a steady run); the ones
        # read after it are zeroized already: the frame in hand is now the one sent.
        tx.watch_frame(selection.frame)
        tx.track(selection.frame)
        tx.captured_at_ms = now_ms()
        self._check_colour_order(selection)
        try:
            sealed = seal_capture(
                tx,
                selection.frame,
                selection.report.face,
                self.client.sealing_key,
                self.client.binding(tx.capture_id, tx.captured_at_ms, boarding_pass),
                gamma=selection.gamma,
            )
        except EncodeError as exc:
            tx.purge(Outcome.REFERRED, f"encode failed: {exc}")
            self._refer(Event.ERROR, "encode failed")
            self._finish(tx, Outcome.REFERRED, f"encode failed: {exc}")
            return TravellerOutcome(Outcome.REFERRED, str(exc), tx.capture_id, purge=tx.record)
        capture_ms = (time.perf_counter() - started) * 1000
        if self._cancelled():
            return self._stopped_during_capture(tx, frames)
        try:
            self.ledger.open_intent(
                tx.capture_id, tx.device_id, tx.sealed_sha256, tx.captured_at_ms
            )
        except OSError as exc:
            log.error("purge ledger not durable (%s): capture %s not sent", exc, tx.capture_id)
            tx.purge(Outcome.REFERRED, "purge ledger not durable")
            self._refer(Event.ERROR, "purge ledger not durable")
            record = self._finish(tx, Outcome.REFERRED, "purge ledger not durable")
            return TravellerOutcome(
                Outcome.REFERRED, "purge ledger not durable", tx.capture_id, purge=record,
                frames_seen=frames, event=Event.ERROR.value,
            )  # fmt: skip
        if not self.gate.fire(Event.FRAME_SENT, "frame sealed and sent", capture_id=tx.capture_id):
            return self._stopped_during_capture(tx, frames)
        tx.sent_at_ms = now_ms()
        sent = time.perf_counter()
        timed_out = False
        deadline = sent + self.verdict_timeout_s if self.verdict_timeout_s else None

        def stop() -> bool:
            nonlocal timed_out
            if self._cancelled():
                return True
            if deadline is not None and time.perf_counter() >= deadline:
                timed_out = True
                return True
            return False

        try:
            verdict = self.client.verify(
                tx.capture_id, tx.captured_at_ms, sealed, boarding_pass, cancelled=stop
            )
        except VerifyCancelled:
            verify_ms = (time.perf_counter() - sent) * 1000
            if timed_out and not self._cancelled():
                tx.purge(Outcome.REFERRED, "verdict timeout")
                self._refer(Event.VERDICT_TIMEOUT, "no verdict within the deadline")
                record = self._finish(tx, Outcome.REFERRED, "verdict timeout")
                return TravellerOutcome(
                    Outcome.REFERRED, "verdict timeout", tx.capture_id, True, record,
                    frames_seen=frames, capture_ms=capture_ms, verify_ms=verify_ms,
                    event=Event.VERDICT_TIMEOUT.value,
                )  # fmt: skip
            return self._stopped_during_capture(tx, frames, sent=(capture_ms, verify_ms))
        except (MatchingUnavailable, VerdictRejected) as exc:
            verify_ms = (time.perf_counter() - sent) * 1000
            tx.purge(Outcome.REFERRED, f"error: {exc}")
            if isinstance(exc, VerdictRejected):
                event = Event.ERROR
            elif exc.failure is MatchingFailure.TIMED_OUT:
                event = Event.VERDICT_TIMEOUT
            else:
                event = Event.MATCHER_UNAVAILABLE
            self._refer(event, f"{event.value.replace('_', ' ')}")
            record = self._finish(tx, Outcome.REFERRED, f"error: {exc}")
            return TravellerOutcome(
                Outcome.REFERRED, str(exc), tx.capture_id, True, record, frames_seen=frames,
                capture_ms=capture_ms, verify_ms=verify_ms, event=event.value,
            )  # fmt: skip
        tx.verdict_at_ms = now_ms()
        verify_ms = (time.perf_counter() - sent) * 1000
        decision = verdict.decision.label
        token = ""
        claim = None
        if verdict.decision is Decision.MATCH:
            claim = self.boarded.claim_token(verdict.traveller_token)
        if claim is Claim.ALREADY_BOARDED:
            # One traveller, one boarding: a lingering or returning traveller (or a
            # replayed verdict for one) never opens the gate twice.
            tx.purge(Outcome.REFERRED, "verdict")
            event = Event.ALREADY_BOARDED
            decision = "already boarded, see agent"
            self._refer(event, decision)
            outcome = Outcome.REFERRED
        elif claim is Claim.NOT_DURABLE:
            tx.purge(Outcome.REFERRED, "verdict")
            event = Event.ERROR
            decision = "match, but who boarded cannot be recorded"
            self._refer(event, decision)
            outcome = Outcome.REFERRED
        elif claim is Claim.CLAIMED:
            tx.purge(Outcome.GRANTED, "verdict")
            if self.gate.grant("match", capture_id=tx.capture_id) is False:
                self.boarded.release_token(verdict.traveller_token)
                if self.gate.opt_out_pending():  # pressed as the verdict came: honoured
                    record = self._finish(tx, Outcome.MANUAL_CHECK, "opt_out", report=False)
                    self.gate.acknowledge_opt_out()
                    return TravellerOutcome(
                        Outcome.MANUAL_CHECK, "opted out while verifying", tx.capture_id, True,
                        record, frames_seen=frames, capture_ms=capture_ms, verify_ms=verify_ms,
                        event=Event.OPT_OUT.value,
                    )  # fmt: skip
                outcome, decision = Outcome.REFERRED, f"match, but gate {self.gate.phase.value}"
            else:
                outcome, token = Outcome.GRANTED, verdict.traveller_token
            event = Event.MATCH
        else:
            event = _DECISION_EVENTS.get(verdict.decision, Event.MATCHER_UNAVAILABLE)
            sent_so_far = (look.capture_ids if look else ()) + (tx.capture_id,)
            retake = event is not Event.MATCHER_UNAVAILABLE and not self._cancelled()
            if retake and len(sent_so_far) < self.selector.rules.attempts:
                # The gate first: if it refuses (cancelled, link lost as the verdict came),
                # the record says what became of the traveller, not a retake that never was.
                if not self.gate.fire(Event.RETAKE, f"{decision}: one more capture"):
                    return self._stopped_during_capture(tx, frames, sent=(capture_ms, verify_ms))
                record = self._finish(tx, Outcome.RETAKEN, "verdict")
                if look is not None:  # a referral, if it comes, is for the first verdict
                    event, decision = look.event, look.decision
                timings = (look.timings if look else ()) + ((capture_ms, verify_ms),)
                return _SecondLook(
                    selection.report, event, decision, sent_so_far, record, face_in_view, timings
                )
            tx.purge(Outcome.REFERRED, "verdict")
            self._refer(event, decision)
            outcome = Outcome.REFERRED
        e2e_ms = (time.perf_counter() - face_in_view) * 1000
        record = self._finish(tx, outcome, "verdict")
        return TravellerOutcome(
            outcome, decision, tx.capture_id, True, record, e2e_ms, frames,
            traveller_token=token, capture_ms=capture_ms, verify_ms=verify_ms,
            event=event.value,
        )  # fmt: skip

    def _stopped_during_capture(
        self, tx: CaptureTransaction, frames_seen: int, *, sent: _Timing | None = None
    ) -> TravellerOutcome:
        """The gate cancelled the transaction: opt-out, or the agent / the link stopped it.
        ``sent``: the capture had left, and how long it took until it stopped."""
        if self.gate.opt_out_pending():
            return self._opted_out_during_capture(tx, frames_seen, sent=sent)
        phase = self.gate.phase
        record = self._finish(tx, Outcome.REFERRED, f"cancelled: {phase.value}", report=False)
        capture_ms, verify_ms = sent or (None, None)
        return TravellerOutcome(
            Outcome.REFERRED if phase is not State.READY else Outcome.CANCELLED,
            f"cancelled ({phase.value})",
            tx.capture_id,
            sent is not None,
            record,
            frames_seen=frames_seen,
            capture_ms=capture_ms,
            verify_ms=verify_ms,
        )

    def _opted_out_during_capture(
        self, tx: CaptureTransaction, frames_seen: int, *, sent: _Timing | None = None
    ) -> TravellerOutcome:
        """The button was pressed mid-capture: purge, send nothing more, agent checks."""
        record = self._finish(tx, Outcome.MANUAL_CHECK, "opt_out", report=False)
        self.gate.acknowledge_opt_out()
        capture_ms, verify_ms = sent or (None, None)
        return TravellerOutcome(
            Outcome.MANUAL_CHECK,
            "opted out while verifying" if sent else "opted out during capture",
            tx.capture_id,
            sent is not None,
            purge=record,
            frames_seen=frames_seen,
            capture_ms=capture_ms,
            verify_ms=verify_ms,
            event=Event.OPT_OUT.value,
        )

    def _no_second_look(
        self, tx: CaptureTransaction, selection: NoSelection, look: _SecondLook
    ) -> TravellerOutcome:
        """No bigger face came after a capture that was not verified: the traveller is
        referred for the first verdict (or stopped, if the gate stopped the capture).

        Even if the camera gave no frame, this is a traveller served, never a camera
        glitch (``camera_ended``): the service would reset the referral and capture the
        same traveller afresh, beyond ``SelectionRules.attempts``."""
        if selection.reason is NoSelectionReason.OPTED_OUT:  # this capture sent nothing
            return self._stopped_during_capture(tx, selection.frames_seen)
        self._finish(tx, Outcome.REFERRED, f"second look: {selection.reason}", report=False)
        self._refer(look.event, look.decision)
        capture_ms, verify_ms = look.timings[-1]
        return TravellerOutcome(
            Outcome.REFERRED, look.decision, look.capture_ids[-1], True, look.purge,
            frames_seen=selection.frames_seen, capture_ms=capture_ms, verify_ms=verify_ms,
            event=look.event.value, earlier_capture_ids=look.capture_ids[:-1],
            earlier_timings=look.timings[:-1],
        )  # fmt: skip

    def _no_selection(self, tx: CaptureTransaction, selection: NoSelection) -> TravellerOutcome:
        if selection.reason is NoSelectionReason.OPTED_OUT:
            return self._stopped_during_capture(tx, selection.frames_seen)
        if selection.reason is NoSelectionReason.SOURCE_ENDED:
            log.error("camera delivered no frame; referring to the agent")
            self._refer(Event.ERROR, "camera delivered no frame")
            return TravellerOutcome(
                Outcome.REFERRED, "camera delivered no frame", event="error", camera_ended=True
            )
        if selection.undecided:
            why = "nobody in view"
            if selection.reason is NoSelectionReason.APPROACHING:
                why = "traveller still approaching"
            self.gate.fire(Event.NOBODY, why)
            return TravellerOutcome(Outcome.NO_FACE, why, frames_seen=selection.frames_seen)
        advice = selection.last_feedback.text if selection.last_feedback else "look at the camera"
        tx.purge(Outcome.REFERRED, "no usable face")
        self._refer(Event.NO_USABLE_FACE, f"no usable face ({advice})")
        record = self._finish(tx, Outcome.REFERRED, "no usable face")
        return TravellerOutcome(
            Outcome.REFERRED,
            f"no usable face ({advice})",
            tx.capture_id,
            purge=record,
            frames_seen=selection.frames_seen,
            event=Event.NO_USABLE_FACE.value,
        )

    def _finish(
        self, tx: CaptureTransaction, outcome: str, reason: str, *, report: bool = True
    ) -> PurgeRecord:
        """Purge (if not yet), write the ledger record (once) and owe the service a receipt
        (sent in the background: nobody waits on it)."""
        record = tx.purge(outcome, reason)
        if not tx.recorded:
            # A shutdown signal waits until "recorded" is set: one record per capture.
            with deferred_shutdown():
                tx.recorded = True  # written, or waiting in the ledger for the disk
                try:
                    self.ledger.append(record)
                except (OSError, LedgerError) as exc:
                    # The purge itself is done; the traveller's outcome stands (the relay
                    # may already have pulsed). No capture leaves until it is written.
                    log.error(
                        "purge ledger not durable: the record of %s waits for the disk (%s)",
                        tx.capture_id,
                        exc,
                    )
            if report and tx.sent_at_ms:
                self.receipts.submit(record)
        return record

    def _finish_after_fault(
        self, tx: CaptureTransaction, outcome: str, reason: str, *, report: bool = True
    ) -> PurgeRecord | None:
        """The fault path: purge first whatever else fails, then refer, then record."""
        try:
            tx.purge(outcome, reason)
        except Exception as exc:  # the record is made even so; it is written below
            log.error("transaction %s: a buffer failed to zeroize: %s", tx.capture_id, exc)
        record = tx.record
        try:
            self.gate.refer()
        except Exception as exc:
            log.error("transaction %s: gate did not take 'see agent': %s", tx.capture_id, exc)
        try:
            record = self._finish(tx, outcome, reason, report=report)
        except Exception as exc:
            log.error("transaction %s: purge record not written: %s", tx.capture_id, exc)
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


__all__ = ["TravellerPipeline"]

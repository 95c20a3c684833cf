"""One traveller through TravellerPipeline and GateWorkflow on a fake link and fake matchers.

The camera path is real (replayed photo, real detector, real sealing); the matching
client is a fake that can be slow, cancellable, or answer any decision, so that each
exception is reached on purpose: opt-out mid-verify, verdict timeout, matcher down,
link lost, agent cancel, no usable face, and every boarding-pass refusal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from appliance.custody.ledger import PurgeLedger
from appliance.custody.transaction import CaptureTransaction
from appliance.errors import MatchingFailure, MatchingUnavailable
from appliance.gate.boarding_log import BoardingLog, check_record
from appliance.gate.flight import Flight
from appliance.gate.machine import Event, State
from appliance.gate.scanner import ScanParser
from appliance.gate.workflow import GateWorkflow, Mode
from appliance.matching.answers import Decision
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import ReplaySource
from appliance.vision.colour_order import ColourOrderWatch
from firmware_bridge.host import DoorChanged, LinkState, OptOutPressed
from firmware_bridge.protocol import Indicator
from testbed.simulate import TwoFacesSource
from testbed.testing import FakeMatcher, Person, TestAgent, bcbp, damaged

CANVAS = (1280, 720)
FLIGHT = Flight("BA", "0283", "2026-11-25", "LAX", "B42")


@pytest.fixture
def kept(monkeypatch) -> list:
    buffers: list = []
    real_track = CaptureTransaction.track

    def track(self, buffer):
        buffers.append(buffer)
        return real_track(self, buffer)

    monkeypatch.setattr(CaptureTransaction, "track", track)
    return buffers


class KeptSource(ReplaySource):
    def __init__(self, photo: Path, frames: int = 6) -> None:
        super().__init__([photo], canvas=CANVAS, repeat=frames)
        self.frames: list[np.ndarray] = []

    def read(self):
        frame = super().read()
        if frame is not None:
            self.frames.append(frame)
        return frame


def boarding_with(detector, client, gate, ledger, **kwargs) -> TravellerPipeline:
    return TravellerPipeline(detector, client, gate, ledger, **kwargs)


def matching_workflow(detector, gate, ledger, log: BoardingLog) -> GateWorkflow:
    """The flight's workflow over a matcher that matches everyone, keeping ``log``."""
    return GateWorkflow(
        boarding_with(detector, FakeMatcher(Decision.MATCH), gate, ledger),
        FLIGHT,
        boarding_log=log,
    )


def all_zero(buffers) -> bool:
    return all(not np.asarray(b).any() for b in buffers)


def last_ledger_reason(ledger: PurgeLedger) -> str:
    return json.loads(ledger.path.read_bytes().splitlines()[-1])["reason"]


# --- TravellerPipeline: the exceptions of one transaction ---------------------------------------


def test_match_grants_with_the_token(detector, gate, link, ledger, demo_photos):
    client = FakeMatcher(Decision.MATCH)
    result = boarding_with(detector, client, gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    assert (result.outcome, result.event, result.traveller_token) == ("granted", "match", "tok-123")
    assert gate.phase is State.GRANTED and link.pulses == [("pulse", 3000)]
    events = [s.event for s in gate.history if s.accepted]
    assert events[-3:] == [Event.CAPTURE_STARTED, Event.FRAME_SENT, Event.MATCH]
    assert result.capture_ms is not None and result.verify_ms is not None


def test_opt_out_pressed_mid_verify_cancels_and_sends_nothing_more(
    detector, gate, link, ledger, kept, demo_photos
):
    client = FakeMatcher(answer=None)
    presser = threading.Thread(
        target=lambda: client.verifying.wait(10) and link.emit(OptOutPressed())
    )
    presser.start()
    source = KeptSource(demo_photos / "obama2.jpg")
    result = boarding_with(detector, client, gate, ledger).process(source)
    presser.join()
    assert result.outcome == "manual_check" and result.reason == "opted out while verifying"
    assert result.capture_ms > 0 and result.verify_ms > 0  # sent, so /metrics times it
    assert client.cancelled_seen
    assert client.receipts == [], "nothing more is sent after an opt-out"
    assert len(kept) == 4 and all_zero(kept + source.frames)
    assert last_ledger_reason(ledger) == "opt_out"
    assert gate.phase is State.MANUAL_CHECK and link.indicator == Indicator.OPT_OUT_ACK
    assert link.pulses == []


def test_no_verdict_within_the_deadline_refers(detector, gate, link, ledger, kept, demo_photos):
    client = FakeMatcher(answer=None)
    boarding = boarding_with(detector, client, gate, ledger, verdict_timeout_s=0.2)
    result = boarding.process(KeptSource(demo_photos / "obama2.jpg"))
    assert (result.outcome, result.reason, result.event) == (
        "referred",
        "verdict timeout",
        "verdict_timeout",
    )
    assert gate.phase is State.REFER_TO_AGENT and link.pulses == []
    assert all_zero(kept)
    assert gate.history[-1].event is Event.VERDICT_TIMEOUT


@pytest.mark.parametrize(
    ("error", "event"),
    [
        (
            MatchingUnavailable(
                "verify failed: UNAVAILABLE: down", MatchingFailure.UNREACHABLE, "UNAVAILABLE"
            ),
            Event.MATCHER_UNAVAILABLE,
        ),
        (
            MatchingUnavailable("verify failed", MatchingFailure.TIMED_OUT, "DEADLINE_EXCEEDED"),
            Event.VERDICT_TIMEOUT,
        ),
    ],
)
def test_matcher_failures_refer(detector, gate, link, ledger, kept, demo_photos, error, event):
    result = boarding_with(detector, FakeMatcher(error), gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    assert result.outcome == "referred" and result.event == event.value
    assert gate.phase is State.REFER_TO_AGENT and link.pulses == []
    assert all_zero(kept)


@pytest.mark.parametrize(
    ("decision", "event"),
    [
        (Decision.NO_MATCH, Event.NO_MATCH),
        (Decision.NOT_ON_FLIGHT, Event.NOT_ON_FLIGHT),
        (Decision.IMAGE_UNUSABLE, Event.UNUSABLE),
        (Decision.GALLERY_NOT_READY, Event.MATCHER_UNAVAILABLE),
    ],
)
def test_each_refusing_verdict_refers(detector, gate, link, ledger, demo_photos, decision, event):
    result = boarding_with(detector, FakeMatcher(decision), gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    assert result.outcome == "referred" and result.event == event.value
    assert result.reason == decision.label
    assert gate.history[-1].event is event and gate.phase is State.REFER_TO_AGENT
    assert link.pulses == []


def test_opt_out_as_the_match_arrives_is_honoured(detector, gate, link, ledger, demo_photos):
    client = FakeMatcher(Decision.MATCH, during=lambda: link.emit(OptOutPressed()))
    result = boarding_with(detector, client, gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    assert result.outcome == "manual_check"
    assert link.pulses == [] and gate.phase is State.MANUAL_CHECK


def test_link_lost_mid_verify_stops_the_transaction(
    detector, gate, link, ledger, kept, demo_photos
):
    client = FakeMatcher(answer=None)
    cutter = threading.Thread(
        target=lambda: client.verifying.wait(10) and link.emit(LinkState(False))
    )
    cutter.start()
    result = boarding_with(detector, client, gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    cutter.join()
    assert result.outcome == "referred" and "out_of_service" in result.reason
    assert gate.phase is State.OUT_OF_SERVICE
    assert client.receipts == [] and all_zero(kept)
    link.emit(LinkState(True))
    assert gate.phase is State.READY


def test_agent_cancel_mid_capture(detector, gate, link, ledger, demo_photos):
    client = FakeMatcher(Decision.MATCH)

    class CancelsOnRead(KeptSource):
        def read(self):
            gate.agent_cancel("agent: wrong queue")
            return super().read()

    source = CancelsOnRead(demo_photos / "obama2.jpg")
    result = boarding_with(detector, client, gate, ledger).process(source)
    assert result.outcome == "cancelled" and not result.frame_sent
    assert client.passes == [] and all_zero(source.frames)
    assert gate.phase is State.READY and link.pulses == []


def test_two_faces_in_frame_is_no_usable_face(detector, gate, link, ledger, demo_photos):
    client = FakeMatcher(Decision.MATCH)
    # Long enough for the pair to count as standing at the gate (settled), not passing by.
    source = TwoFacesSource(demo_photos / "obama2.jpg", demo_photos / "biden.jpg", frames=20)
    result = boarding_with(detector, client, gate, ledger).process(source)
    assert result.outcome == "referred" and result.reason.startswith("no usable face")
    assert client.passes == [] and not result.frame_sent
    assert gate.history[-1].event is Event.NO_USABLE_FACE
    assert gate.phase is State.REFER_TO_AGENT


def test_nobody_in_view_goes_back_to_ready(detector, gate, ledger):
    blank = np.full((720, 1280, 3), 118, np.uint8)

    class Blank:
        def __init__(self):
            self.n = 0

        def read(self):
            self.n += 1
            return blank.copy() if self.n <= 5 else None

        def close(self):
            pass

    result = boarding_with(detector, FakeMatcher(), gate, ledger).process(Blank())
    assert result.outcome == "no_face" and gate.phase is State.READY
    assert gate.history[-1].event is Event.NOBODY


def test_out_of_service_gate_captures_nothing(detector, gate, link, ledger, demo_photos):
    link.emit(LinkState(False))
    source = KeptSource(demo_photos / "obama2.jpg")
    result = boarding_with(detector, FakeMatcher(), gate, ledger).process(source)
    assert result.outcome == "referred" and source.frames == []


# --- GateWorkflow: passes, agents, the boarding log ---------------------------------------

AGENT = TestAgent("A7")
OBAMA = Person("obama", "OBAMA/BARACK", "ABC123", Path("obama.jpg"), (), True)


@pytest.fixture
def workflow(detector, gate, ledger, tmp_path):
    def make(client, mode=Mode.PASS_THEN_FACE):
        boarding = TravellerPipeline(detector, client, gate, ledger)
        scanner = ScanParser(reference_date=dt.date(2026, 11, 25), agents=AGENT.registry())
        return GateWorkflow(
            boarding,
            FLIGHT,
            mode=mode,
            boarding_log=BoardingLog(tmp_path / "boarding.jsonl"),
            scanner=scanner,
        )

    return make


def test_a_release_after_the_gate_referred_by_itself_is_logged(workflow, gate, link):
    """Every opening has a boarding-log line, even with no traveller's record open."""
    wf = workflow(FakeMatcher(), Mode.BIOMETRIC_FIRST)
    gate.fire(Event.ERROR, "camera stalled")  # no traveller at the gate
    wf.scan(AGENT.action("RELEASE"))
    assert len(link.pulses) == 1
    gate.agent_cancel("passage over")
    assert wf.wait_idle(5)
    (record,) = wf.log.read()
    assert record["released_by_agent"] is True and record["agent_id"] == "A7"


class NeverRead:
    def read(self):
        raise AssertionError("nothing may be captured for a refused pass")

    def close(self):
        pass


@pytest.mark.parametrize(
    ("flight", "outcome"),
    [
        (Flight("BA", "0284", "2026-11-25", "LAX"), "wrong_flight"),
        (Flight("BA", "0283", "2026-11-26", "LAX"), "wrong_date"),
        (Flight("BA", "0283", "2026-11-25", "JFK"), "wrong_airport"),
    ],
)
def test_pass_for_another_flight_refers_without_capture(workflow, gate, link, flight, outcome):
    client = FakeMatcher()
    wf = workflow(client)
    check = wf.scan(bcbp(OBAMA, 7, flight))
    assert check.outcome.value == outcome
    assert gate.phase is State.REFER_TO_AGENT and link.indicator == Indicator.SEE_AGENT
    result = wf.board(NeverRead())
    assert result.outcome == "referred" and client.passes == []
    wf.scan(AGENT.action("CANCEL"))
    assert wf.wait_idle(5)
    record = wf.log.records[-1]
    assert record["pass_check"] == outcome and record["outcome"] == "referred"
    assert record["reason"].startswith(f"pass {outcome}")
    assert record["frame_sent"] is False and record["resolution"] == "agent_cancel"


def test_pass_then_face_sends_the_pass_and_boards_once(workflow, gate, link, demo_photos):
    client = FakeMatcher(Decision.MATCH)
    wf = workflow(client)
    text = bcbp(OBAMA, 12)
    assert wf.scan(text).ok and gate.phase is State.CAPTURING
    result = wf.board(KeptSource(demo_photos / "obama2.jpg"))
    assert result.outcome == "granted" and client.passes == [text]
    link.emit(DoorChanged(True))
    link.emit(DoorChanged(False))
    assert wf.wait_idle(5)
    record = wf.log.records[-1]
    assert (record["flight"], record["sequence"]) == ("BA283 2026-11-25", "12")
    assert record["traveller_token"] == "tok-123" and record["resolution"] == "door_closed"
    # the same pass again: already boarded, nothing captured
    check = wf.scan(text)
    assert check.outcome.value == "already_boarded" and gate.phase is State.REFER_TO_AGENT
    assert wf.board(NeverRead()).outcome == "referred"
    assert len(client.passes) == 1


def test_pass_then_face_someone_elses_pass_is_no_match(workflow, gate, demo_photos):
    client = FakeMatcher(Decision.NO_MATCH)
    wf = workflow(client)
    assert wf.scan(bcbp(OBAMA, 3)).ok
    result = wf.board(KeptSource(demo_photos / "biden.jpg"))
    assert (result.outcome, result.reason) == ("referred", "no_match")
    assert gate.phase is State.REFER_TO_AGENT


def test_pass_then_face_needs_a_pass(workflow):
    wf = workflow(FakeMatcher())
    assert wf.board(NeverRead()).reason == "scan the boarding pass first"


def test_bad_scan_changes_nothing_and_is_counted(workflow, gate, link, demo_photos):
    wf = workflow(FakeMatcher(Decision.MATCH))
    text = bcbp(OBAMA, 4)
    error = wf.scan(damaged(text))
    assert error.field == "legs[0].julian_day"
    assert gate.phase is State.READY and link.pulses == []
    assert wf.scan(text).ok
    wf.board(KeptSource(demo_photos / "obama2.jpg"))
    gate.ready()
    assert wf.wait_idle(5)
    assert wf.log.records[-1]["bad_scans"] == 1 and wf.log.records[-1]["scans"] == 2


def test_agent_badges_opt_out_release_cancel(workflow, gate, link):
    wf = workflow(FakeMatcher(), Mode.BIOMETRIC_FIRST)
    wf.scan(AGENT.action("OPTOUT"))
    assert gate.phase is State.MANUAL_CHECK
    assert wf.scan(bcbp(OBAMA, 9)).ok  # checked during the manual check, noted
    assert gate.phase is State.MANUAL_CHECK
    wf.scan(AGENT.action("RELEASE"))
    assert gate.phase is State.AGENT_RELEASED and link.pulses == [("pulse", 3000)]
    assert "9" in wf.boarded.sequences
    gate.fire(Event.AGENT_CANCEL, "agent: traveller turned back")
    assert wf.wait_idle(5)
    record = wf.log.records[-1]
    assert record["released_by_agent"] and record["sequence"] == "9"
    assert record["outcome"] == "agent_released"


def test_biometric_first_opt_out_button_then_release(workflow, gate, link, demo_photos):
    wf = workflow(FakeMatcher(), Mode.BIOMETRIC_FIRST)
    link.emit(OptOutPressed())
    source = KeptSource(demo_photos / "obama2.jpg")
    assert wf.board(source).outcome == "manual_check"
    assert source.frames == []
    wf.scan(AGENT.action("RELEASE"))
    assert gate.phase is State.AGENT_RELEASED
    assert gate.wait_for(State.AGENT_RELEASED, timeout=1)


def test_boarding_log_holds_no_image_bytes(workflow, gate, link, demo_photos, tmp_path):
    wf = workflow(FakeMatcher(Decision.MATCH), Mode.BIOMETRIC_FIRST)
    kinds = []
    for photo in ("obama2.jpg", "biden.jpg"):
        source = KeptSource(demo_photos / photo)
        kinds.append(wf.board(source).outcome)
        gate.ready()
        assert wf.wait_idle(5)
    raw = (tmp_path / "boarding.jsonl").read_bytes()
    assert raw.isascii()
    for marker in (b"\xff\xd8", b"JFIF", b"\x89PNG", b"base64"):
        assert marker not in raw
    lines = raw.splitlines()
    assert len(lines) == 2 and all(len(line) < 2000 for line in lines)
    for line in lines:
        record = json.loads(line)
        assert set(record) <= set(check_record(record))
        assert all(not isinstance(v, str) or len(v) <= 240 for v in record.values())


@pytest.mark.parametrize(
    "record",
    [
        {"outcome": b"\xff\xd8\xff\xe0"},
        {"outcome": bytearray(b"x")},
        {"reason": np.zeros(4, np.uint8)},
        {"reason": "A" * 5000},
        {"template": "0.1,0.2"},
        {"reason": "line\nbreak"},
    ],
)
def test_boarding_log_refuses_anything_image_like(tmp_path, record):
    log = BoardingLog(tmp_path / "b.jsonl")
    with pytest.raises(ValueError):
        log.append(record)
    assert (tmp_path / "b.jsonl").read_bytes() == b""


def test_a_second_match_for_a_boarded_traveller_never_pulses(
    detector, gate, link, ledger, demo_photos
):
    """The same traveller token on the same flight is granted once: a second MATCH (a
    lingering traveller, an MCU reboot mid-grant, a replayed verdict) refers instead."""
    boarding = boarding_with(detector, FakeMatcher(Decision.MATCH), gate, ledger)
    first = boarding.process(KeptSource(demo_photos / "obama2.jpg"))
    assert first.outcome == "granted" and len(link.pulses) == 1
    gate.agent_cancel("next traveller")  # the passage ends
    again = boarding.process(KeptSource(demo_photos / "obama2.jpg"))
    assert (again.outcome, again.reason) == ("referred", "already boarded, see agent")
    assert again.event == Event.ALREADY_BOARDED.value
    assert len(link.pulses) == 1 and gate.phase is State.REFER_TO_AGENT


def test_who_boarded_survives_a_restart_through_the_boarding_log(
    detector, gate, link, ledger, demo_photos, tmp_path
):
    log = BoardingLog(tmp_path / "boarding.jsonl")
    first = matching_workflow(detector, gate, ledger, log)
    assert first.board(KeptSource(demo_photos / "obama2.jpg")).outcome == "granted"
    gate.agent_cancel("the traveller walked through")
    assert first.wait_idle(5)
    # The service restarts: a new pipeline and workflow over the same boarding log.
    restarted = matching_workflow(detector, gate, ledger, BoardingLog(tmp_path / "boarding.jsonl"))
    again = restarted.board(KeptSource(demo_photos / "obama2.jpg"))
    assert again.reason == "already boarded, see agent" and len(link.pulses) == 1


def test_a_torn_boarding_log_line_does_not_stop_the_next_start(
    detector, gate, link, ledger, demo_photos, tmp_path, caplog
):
    """The power goes mid-append: the last line is half written. The next start skips it
    with a warning and still knows who boarded (reading the log raised before, so the
    unit could not start at all)."""
    path = tmp_path / "boarding.jsonl"
    first = matching_workflow(detector, gate, ledger, BoardingLog(path))
    assert first.board(KeptSource(demo_photos / "obama2.jpg")).outcome == "granted"
    gate.agent_cancel("the traveller walked through")
    assert first.wait_idle(5)
    with path.open("ab") as torn:
        torn.write(b'{"capture_id": "c-9", "outco')
    with caplog.at_level(logging.WARNING, logger="gate.boarding_log"):
        restarted = matching_workflow(detector, gate, ledger, BoardingLog(path))
    (torn,) = [r for r in caplog.records if "is not a record" in r.getMessage()]
    assert torn.levelno == logging.WARNING and "the last line" in torn.getMessage()
    again = restarted.board(KeptSource(demo_photos / "obama2.jpg"))
    assert again.reason == "already boarded, see agent" and len(link.pulses) == 1
    # the next record starts a line of its own instead of being glued to the fragment
    BoardingLog(path).append({"capture_id": "c-10", "outcome": "referred"})
    assert [r.get("capture_id") for r in BoardingLog(path).read()][-1] == "c-10"
    # damage inside the file is another matter: the record of a traveller is gone
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([b"garbage\n", *lines[1:]]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gate.boarding_log"):
        assert len(BoardingLog(path).read()) == len(lines) - 1
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_who_boarded_survives_a_crash_before_the_passage_ended(
    detector, gate, link, ledger, demo_photos, tmp_path
):
    """Killed between the pulse and the end of the passage, no boarding-log record was
    written; the claim made before the pulse is still there after the restart."""
    first = matching_workflow(detector, gate, ledger, BoardingLog(tmp_path / "boarding.jsonl"))
    assert first.board(KeptSource(demo_photos / "obama2.jpg")).outcome == "granted"
    # The power goes now: what is on disk is what the next start finds.
    on_disk = tmp_path / "after-the-cut"
    shutil.copytree(tmp_path, on_disk, ignore=shutil.ignore_patterns("after-the-cut"))
    assert (on_disk / "boarding.jsonl").read_text() == ""  # the passage had not ended
    gate.agent_cancel("the gate of the next start is ready again")
    restarted = matching_workflow(detector, gate, ledger, BoardingLog(on_disk / "boarding.jsonl"))
    again = restarted.board(KeptSource(demo_photos / "obama2.jpg"))
    assert again.reason == "already boarded, see agent" and len(link.pulses) == 1


def test_a_grant_that_cannot_be_recorded_is_not_granted(
    detector, gate, link, ledger, demo_photos, tmp_path
):
    log = BoardingLog(tmp_path / "boarding.jsonl")
    workflow = matching_workflow(detector, gate, ledger, log)
    log.register_path.mkdir()  # the register cannot be appended to
    result = workflow.board(KeptSource(demo_photos / "obama2.jpg"))
    assert (result.outcome, result.reason) == (
        "referred",
        "match, but who boarded cannot be recorded",
    )
    assert link.pulses == [] and gate.phase is State.REFER_TO_AGENT


def test_agent_station_release_and_cancel_carry_agent_and_reason(workflow, gate, link):
    from appliance.gate.agents import AgentCommand, CancelReason, ReleaseReason

    wf = workflow(FakeMatcher(), Mode.PASS_THEN_FACE)
    assert not wf.scan(bcbp(OBAMA, 11, flight=Flight("BA", "0999", "2026-11-25", "LAX"))).ok
    card = wf.card()
    assert card is not None and card.passenger == "OBAMA/BARACK" and card.seat == "12A"
    assert card.pass_check == "wrong_flight" and card.outcome == "referred"
    with pytest.raises(ValueError):
        wf.agent_command("A7", AgentCommand.RELEASE, CancelReason.TRAVELLER_LEFT)
    assert link.pulses == []
    assert wf.agent_command("A7", AgentCommand.CANCEL, CancelReason.NOT_BOARDING)
    assert wf.wait_idle(5) and wf.card() is None
    record = wf.log.records[-1]
    assert (record["agent_id"], record["agent_reason"]) == ("A7", "not_boarding")
    assert not record["released_by_agent"] and "OBAMA" not in json.dumps(record)

    gate.opt_out()  # the next traveller opts out: the agent checks documents, releases
    wf.board(NeverRead())
    assert wf.agent_command("A8", AgentCommand.RELEASE, ReleaseReason.DOCUMENTS_CHECKED)
    assert link.pulses == [("pulse", 3000)]
    link.emit(DoorChanged(True))
    link.emit(DoorChanged(False))
    assert wf.wait_idle(5)
    record = wf.log.records[-1]
    assert record["released_by_agent"] and record["outcome"] == "manual_check"
    assert (record["agent_id"], record["agent_reason"]) == ("A8", "documents_checked")


def test_capture_progress_reports_coordinates_and_feedback_only(
    detector, gate, ledger, demo_photos
):
    from appliance.vision.feedback import Feedback
    from appliance.vision.progress import CaptureProgress

    seen: list[CaptureProgress] = []
    boarding = boarding_with(detector, FakeMatcher(Decision.MATCH), gate, ledger)
    boarding.on_capture_progress(seen.append)
    boarding.on_capture_progress(lambda _: 1 / 0)  # a failing listener changes nothing
    source = ReplaySource([demo_photos / "obama2.jpg"], canvas=CANVAS, repeat=3, face_scale=0.15)
    result = boarding.process(source)
    assert seen and all(p.frame_size == (1280, 720) for p in seen)
    first = seen[0]
    assert first.box is not None and all(0.0 <= v <= 1280 for v in first.box)
    assert len(first.keypoints) == 6 and first.faces == 1
    assert first.failures[0] == "inter_eye_distance"  # small face: "come closer"
    assert first.feedback == "step_closer"
    assert len(seen) == result.frames_seen == 3  # one report per frame looked at
    fields = {type(v) for p in seen for v in vars(p).values()}
    assert fields <= {int, float, str, bool, tuple, Feedback, type(None)}  # no arrays, bytes


class SwappedSource(ReplaySource):
    """A camera whose red and blue are swapped (a driver delivering R, G, B)."""

    def __init__(self, photo: Path) -> None:
        super().__init__([photo], canvas=CANVAS, repeat=6)

    def read(self):
        frame = super().read()
        if frame is None:
            return None
        swapped = np.ascontiguousarray(frame[:, :, ::-1])
        frame.fill(0)
        return swapped


@pytest.mark.parametrize("swapped", [True, False])
def test_faces_sent_from_a_camera_with_red_and_blue_swapped_are_reported(
    detector, gate, link, ledger, demo_photos, caplog, swapped
):
    boarding = boarding_with(detector, FakeMatcher(Decision.MATCH), gate, ledger)
    boarding.colour_order = ColourOrderWatch(run=1)
    photo = demo_photos / "obama2.jpg"
    with caplog.at_level(logging.WARNING, logger="gate.camera"):
        result = boarding.process(
            SwappedSource(photo) if swapped else ReplaySource([photo], canvas=CANVAS, repeat=6)
        )
    assert result.outcome == "granted", "a warning, not a refusal: the matcher decides"
    warned = [r for r in caplog.records if "red and blue look swapped" in r.getMessage()]
    assert len(warned) == (1 if swapped else 0)


def test_a_failing_colour_order_check_never_stops_a_capture(
    detector, gate, link, ledger, demo_photos, caplog, monkeypatch
):
    boarding = boarding_with(detector, FakeMatcher(Decision.MATCH), gate, ledger)

    def broken(frame, face):
        raise MemoryError("no room to read the face's colours")

    monkeypatch.setattr(boarding.colour_order, "observe", broken)
    with caplog.at_level(logging.ERROR):
        result = boarding.process(KeptSource(demo_photos / "obama2.jpg"))
    assert result.outcome == "granted"
    assert any("colour-order check failed" in r.getMessage() for r in caplog.records)

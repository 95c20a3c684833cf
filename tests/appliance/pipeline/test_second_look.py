"""A capture the matcher does not verify is taken once more, nearer, before a referral.

The camera path is real (a photo that grows as a traveller walks up, the real detector,
real sealing); the matcher is a fake that answers each verify in turn.
"""

from __future__ import annotations

import json

import pytest

from appliance.custody.ledger import PurgeLedger
from appliance.gate.flight import Flight
from appliance.gate.machine import Event, GateController, State
from appliance.gate.workflow import GateWorkflow
from appliance.matching.answers import Decision
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.progress import CaptureProgress
from appliance.vision.quality import QualityThresholds
from appliance.vision.selection import FrameSelector, NoSelection, Selection, SelectionRules
from firmware_bridge.host import OptOutPressed
from firmware_bridge.protocol import Indicator
from testbed.testing import FakeMatcher
from tests.support import WalkingUp


def answers(matcher: FakeMatcher, *decisions: Decision) -> FakeMatcher:
    """The matcher answers the n-th verify with ``decisions[n]``."""

    def next_answer() -> None:
        matcher.answer = decisions[min(len(matcher.passes), len(decisions)) - 1]

    matcher.during = next_answer
    return matcher


def ledger_lines(ledger: PurgeLedger) -> list[dict]:
    """The purge records (not the intents written before each capture left)."""
    lines = [json.loads(line) for line in ledger.path.read_bytes().splitlines()]
    return [line for line in lines if "outcome" in line]


def sent_widths(pipeline: TravellerPipeline) -> list[float]:
    """The face width of every frame the capture decided to send (the first capture's
    first; the last is the second look's, sent after any nearer one replaced it)."""
    widths: list[float] = []

    def seen(progress: CaptureProgress) -> None:
        if progress.captured and progress.box is not None:
            widths.append(progress.box[2] - progress.box[0])

    pipeline.on_capture_progress(seen)
    return widths


def test_a_capture_that_is_not_verified_is_taken_again_nearer_and_granted(
    detector, gate, link, ledger, demo_photos
):
    matcher = answers(FakeMatcher(), Decision.NO_MATCH, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger)
    widths = sent_widths(pipeline)
    floors: list[float] = []  # the size each captured frame had to reach (the display's)
    pipeline.on_capture_progress(
        lambda p: floors.append(p.min_inter_eye_px) if p.captured else None
    )
    source = WalkingUp(demo_photos / "obama2.jpg")

    result = pipeline.process(source)

    assert result.outcome == "granted" and len(matcher.passes) == 2
    assert len(widths) >= 2 and widths[-1] >= 1.3 * widths[0]  # the second face is nearer
    assert floors[0] == pipeline.selector.limits.min_inter_eye_px < 1.3 * floors[0] < floors[1]
    first, second = ledger_lines(ledger)
    assert first["outcome"] == "retaken" and second["outcome"] == "granted"
    assert result.capture_id == second["capture_id"] != first["capture_id"]
    assert result.earlier_capture_ids == (first["capture_id"],)
    # both captures are timed, for /metrics: each one sent was captured and verified
    (earlier,) = result.earlier_timings
    assert all(ms > 0 for ms in (*earlier, result.capture_ms, result.verify_ms))
    events = [step.event for step in gate.history if step.accepted]
    assert events[-3:] == [Event.RETAKE, Event.FRAME_SENT, Event.MATCH]
    assert len(link.pulses) == 1
    assert all(not frame.any() for frame in source.given)  # both transactions purged
    assert [r.capture_id for r in matcher.receipts] == [first["capture_id"], result.capture_id]


@pytest.mark.parametrize(("noise", "light"), [(9.0, 1.0), (0.0, 0.25)], ids=["noisy", "dark"])
def test_a_weak_face_is_taken_again_only_once_far_nearer(
    detector, gate, ledger, demo_photos, noise, light
):
    """A noisy sensor (a dim hall at high gain) or a dark face (backlight) lifted by the
    tone curve: the second look waits for ``weak_retake_growth`` times the size."""
    rules = SelectionRules()
    matcher = answers(FakeMatcher(), Decision.NO_MATCH, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger, rules=rules)
    widths = sent_widths(pipeline)
    sent: list = []
    real_retake = pipeline.selector.retake

    def retake(source, report, **kwargs):
        sent.append(report)
        return real_retake(source, report, **kwargs)

    pipeline.selector.retake = retake
    source = WalkingUp(demo_photos / "obama2.jpg", frames=60, end=0.6, noise=noise, light=light)
    result = pipeline.process(source)
    assert result.outcome == "granted" and len(matcher.passes) == 2
    if noise:
        assert sent[0].measures["noise"] >= rules.weak_face_noise
    else:
        assert sent[0].gamma <= rules.weak_face_gamma
    assert widths[-1] >= 0.95 * rules.weak_retake_growth * widths[0]
    assert all(not frame.any() for frame in source.given)


def test_the_second_look_sends_the_traveller_at_their_nearest(detector, demo_photos):
    """A traveller still walking up when the face is big enough: the second look goes on
    while a face ``nearer_growth`` bigger keeps coming, sends the nearest one, and wipes
    every frame it replaced; one who stops is sent within ``nearer_frames``."""
    selector = FrameSelector(detector, QualityThresholds(), SelectionRules())
    widths: list[float] = []
    selector.add_observer(
        lambda p: widths.append(p.box[2] - p.box[0]) if p.captured and p.box else None
    )
    source = WalkingUp(demo_photos / "obama2.jpg", frames=25, start=0.2, end=0.6)
    first = selector.select(source)
    assert isinstance(first, Selection)
    sent_at = len(source.given)

    again = selector.retake(source, first.report)

    assert isinstance(again, Selection)
    assert len(widths) >= 3  # the first capture, a big-enough face, then nearer ones
    sent_width = again.report.face.box[2] - again.report.face.box[0]
    assert sent_width == widths[-1] > widths[1]  # nearer than the first big-enough face
    kept = [frame for frame in source.given[sent_at:] if frame.any()]
    assert len(kept) == 1 and kept[0] is again.frame  # every replaced frame is wiped
    # it stopped at the traveller's nearest: the walk-up ends at frame 25, and no bigger
    # face came within nearer_frames of the last one decided (the budget ran further)
    rules = SelectionRules()
    assert len(source.given) <= 25 + rules.nearer_frames + rules.steady_frames
    assert sent_at + rules.retake_frames > 25 + rules.nearer_frames + rules.steady_frames


def test_with_one_attempt_a_capture_that_is_not_verified_refers_at_once(
    detector, gate, link, ledger, demo_photos
):
    matcher = answers(FakeMatcher(), Decision.NO_MATCH, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger, rules=SelectionRules(attempts=1))

    result = pipeline.process(WalkingUp(demo_photos / "obama2.jpg"))

    assert result.outcome == "referred" and result.event == "no_match"
    assert len(matcher.passes) == 1 and not link.pulses
    assert [line["outcome"] for line in ledger_lines(ledger)] == ["referred"]


def test_a_traveller_who_comes_no_nearer_is_referred_for_the_first_verdict(
    detector, gate, link, ledger, demo_photos
):
    """Standing still: no bigger face comes within the second look's frames."""
    matcher = answers(FakeMatcher(), Decision.NOT_ON_FLIGHT, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger)
    source = WalkingUp(demo_photos / "obama2.jpg", frames=1, start=0.35, end=0.35)

    result = pipeline.process(source)

    assert result.outcome == "referred" and result.event == "not_on_flight"
    assert len(matcher.passes) == 1 and not link.pulses
    assert gate.phase is State.REFER_TO_AGENT and link.indicator == Indicator.SEE_AGENT
    lines = ledger_lines(ledger)
    assert lines[0]["outcome"] == "retaken" and result.capture_id == lines[0]["capture_id"]
    assert lines[1]["outcome"] == "referred" and lines[1]["reason"].startswith("second look")
    assert all(not frame.any() for frame in source.given)
    # the one capture sent is the one timed (it had no timings for /metrics before)
    assert result.capture_ms > 0 and result.verify_ms > 0 and result.earlier_timings == ()


def test_an_opt_out_during_the_first_verify_is_not_followed_by_a_second_capture(
    detector, gate, link, ledger, demo_photos
):
    matcher = answers(FakeMatcher(), Decision.NO_MATCH, Decision.MATCH)
    first_answer = matcher.during

    def press_then_answer() -> None:
        gate.opt_out("button")
        first_answer()

    matcher.during = press_then_answer
    pipeline = TravellerPipeline(detector, matcher, gate, ledger)
    source = WalkingUp(demo_photos / "obama2.jpg")

    result = pipeline.process(source)

    assert gate.phase is State.MANUAL_CHECK and len(matcher.passes) == 1
    assert (
        result.outcome != "granted"
        and not link.pulses
        and Event.RETAKE not in [s.event for s in gate.history]
    )
    assert result.frame_sent and result.capture_ms > 0 and result.verify_ms > 0  # for /metrics
    assert all(not frame.any() for frame in source.given)


def test_a_retake_the_gate_refuses_is_not_recorded_as_retaken(
    detector, gate, link, ledger, demo_photos
):
    """The agent cancels just as the first verdict (no match) comes: the gate refuses the
    second look, and the capture's record says cancelled, not a retake that never was."""
    matcher = answers(FakeMatcher(), Decision.NO_MATCH, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger)
    fire = gate.fire

    def cancel_first(event: Event, reason: str = "", **fields: object) -> bool:
        if event is Event.RETAKE:
            gate.agent_cancel("agent cancelled")
        return fire(event, reason, **fields)

    gate.fire = cancel_first
    source = WalkingUp(demo_photos / "obama2.jpg")

    result = pipeline.process(source)

    assert len(matcher.passes) == 1 and not link.pulses
    assert result.outcome != "granted" and result.frame_sent
    assert result.capture_ms > 0 and result.verify_ms > 0  # the one sent is timed
    (record,) = ledger_lines(ledger)
    assert record["outcome"] == "referred" and record["capture_id"] == result.capture_id
    assert all(not frame.any() for frame in source.given)


def test_an_unavailable_matcher_is_not_asked_twice(detector, gate, link, ledger, demo_photos):
    matcher = answers(FakeMatcher(), Decision.GALLERY_NOT_READY, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger)

    result = pipeline.process(WalkingUp(demo_photos / "obama2.jpg"))

    assert result.outcome == "referred" and len(matcher.passes) == 1


def during_the_second_look(pipeline: TravellerPipeline, gate: GateController, act) -> None:
    """``act()`` on the third frame the second look examines."""
    frames = 0

    def seen(progress: CaptureProgress) -> None:
        nonlocal frames
        if gate.phase is State.CAPTURING and Event.RETAKE in [s.event for s in gate.history]:
            frames += 1
            if frames == 3:
                act()

    pipeline.on_capture_progress(seen)


@pytest.mark.parametrize("stop", ["opt_out_button", "agent_cancel"])
def test_a_second_look_stopped_before_it_sent_anything_counts_one_capture_sent(
    detector, gate, link, ledger, demo_photos, stop
):
    """The boarding log said two captures were sent (and "opted out while verifying")
    for a traveller whose second look was stopped before it sent anything."""
    matcher = answers(FakeMatcher(), Decision.NO_MATCH, Decision.MATCH)
    pipeline = TravellerPipeline(detector, matcher, gate, ledger)
    workflow = GateWorkflow(pipeline, Flight("BA", "0283", "2026-11-25", "LAX", "B42"))
    if stop == "opt_out_button":
        during_the_second_look(pipeline, gate, lambda: link.emit(OptOutPressed()))
    else:
        during_the_second_look(pipeline, gate, lambda: gate.agent_cancel("agent cancelled"))
    source = WalkingUp(demo_photos / "obama2.jpg")

    result = workflow.board(source)
    gate.ready("the agent dealt with it")  # the traveller's boarding log line is written

    assert len(matcher.passes) == 1 and not link.pulses
    assert result.outcome == ("manual_check" if stop == "opt_out_button" else "cancelled")
    assert not result.frame_sent and "verifying" not in result.reason
    (record,) = workflow.log.records
    first, second = ledger_lines(ledger)
    assert (first["outcome"], second["sent_at_ms"]) == ("retaken", 0)
    assert record["captures_sent"] == 1 and record["earlier_capture_ids"] == first["capture_id"]
    assert record["capture_id"] == second["capture_id"]
    assert all(not frame.any() for frame in source.given)


@pytest.mark.parametrize("attempts", [0, 4])
def test_attempts_are_bounded(attempts):
    with pytest.raises(ValueError, match="attempts must be 1 to 3"):
        SelectionRules(attempts=attempts)


class Chained:
    """One camera over two walks: frames come from ``first`` until ``then`` is set (the
    traveller's later steps); ``given`` holds every frame of both."""

    def __init__(self, first: WalkingUp) -> None:
        self.first, self.then = first, None
        self.given = first.given

    def read(self):
        frame = (self.then or self.first).read()
        if self.then is not None and frame is not None:
            self.given.append(frame)
        return frame

    def close(self) -> None:
        pass


def captured_then_stopped(detector, demo_photos, rules: SelectionRules, stop: float):
    """A first capture of a traveller walking up, who then walks on to ``stop`` times the
    size of the last frame read and stands there."""
    photo = demo_photos / "obama2.jpg"
    selector = FrameSelector(detector, QualityThresholds(), rules)
    walk = WalkingUp(photo, frames=25, start=0.2, end=0.6)
    source = Chained(walk)
    first = selector.select(source)
    assert isinstance(first, Selection)
    scale = float(walk.scales[len(walk.given) - 1])
    source.then = WalkingUp(photo, frames=8, start=scale, end=stop * scale)
    return selector, source, first


def test_a_traveller_who_stops_short_of_the_size_asked_is_taken_as_near_as_they_came(
    detector, demo_photos
):
    """The second look asks for a face 1.4 times the one sent; a traveller who stops at
    the gate 1.3 times as near is sent at that size once settled, rather than referred
    with the attempt unused."""
    rules = SelectionRules()
    selector, source, first = captured_then_stopped(detector, demo_photos, rules, 1.3)

    again = selector.retake(source, first.report)

    assert isinstance(again, Selection)
    grew = again.report.measures["inter_eye_distance"] / first.report.measures["inter_eye_distance"]
    assert rules.stopped_retake_growth <= grew < rules.retake_growth
    kept = [frame for frame in source.given if frame.any()]
    assert len(kept) == 2 and kept[0] is first.frame and kept[1] is again.frame


def test_a_traveller_who_stops_nearly_where_they_were_is_still_referred(detector, demo_photos):
    """Not bigger by ``stopped_retake_growth``: the attempt is not spent on much the same
    face."""
    selector, source, first = captured_then_stopped(detector, demo_photos, SelectionRules(), 1.1)

    assert isinstance(selector.retake(source, first.report), NoSelection)
    kept = [frame for frame in source.given if frame.any()]
    assert len(kept) == 1 and kept[0] is first.frame

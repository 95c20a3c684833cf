"""The lane board's logic: instructions, dwell, referrals, counters, alerts, views."""

from __future__ import annotations

import asyncio

import pytest

from appliance.gate.machine import Event, GateController, State
from appliance.gate.passes import PassOutcome
from appliance.gate.workflow import TravellerCard
from appliance.screens.board import (
    AGENT_FIELDS,
    DISPLAY_FIELDS,
    SUMMARY_FIELDS,
    LaneBoard,
    LaneIdentity,
)
from appliance.screens.catalog import CATALOGS
from appliance.screens.lane import Alert, Instruction, instruction_for, target_outline
from appliance.vision.quality import FEEDBACK
from firmware_bridge.host import DoorChanged, OptOutPressed
from testbed.testing import FakeClock, FakeLink, capture_progress

CARD = TravellerCard(1, "OBAMA/BARACK", "12A", "BA283", PassOutcome.OK, 1, 0, None)


def progress(failure, faces=1, box=(0.45, 0.3, 0.55, 0.48), min_inter_eye_px=28.0):
    return capture_progress(failure, box, faces, min_inter_eye_px=min_inter_eye_px)


@pytest.fixture
def rig():
    link = FakeLink()
    gate = GateController(link)
    clock = FakeClock()
    card = {"now": None}
    health: set[Alert] = set()
    board = LaneBoard(
        LaneIdentity("gate-1", "B42", "BA0283 2026-11-25 LAX", True),
        min_inter_eye_px=28.0,
        zone_width=1.0,
        card=lambda: card["now"],
        health=lambda: health,
        clock=clock,
    )
    board.follow(gate)
    gate.start()
    yield board, gate, link, clock, card, health
    gate.close()


def view(board, fields=AGENT_FIELDS):
    return board.snapshot(fields)[1]


def test_every_quality_feedback_has_an_instruction_and_words() -> None:
    for failure in FEEDBACK:
        key = instruction_for(State.CAPTURING, pass_first=False, failure=failure)
        assert key is not Instruction.LANE_CLOSED
    keys = set(CATALOGS["en"])
    assert keys == set(CATALOGS["fr"])  # every language has every word
    assert {i.value for i in Instruction} <= keys
    assert {f"alert_{a.value}" for a in Alert} <= keys


def test_the_display_follows_the_gate_and_the_capture(rig) -> None:
    board, gate, _, clock, card, _ = rig
    assert view(board, DISPLAY_FIELDS)["instruction"] == "scan_pass"
    card["now"] = CARD
    gate.fire(Event.PASS_SCANNED, "pass ok")
    assert view(board, DISPLAY_FIELDS)["instruction"] == "look_at_camera"  # no frame yet
    shown = []
    for failure in ("no_face", "inter_eye_distance", "yaw", "sharpness"):
        board.capture_progress(
            progress(failure, box=None if failure == "no_face" else (0.45, 0.3, 0.55, 0.48))
        )
        shown.append(view(board, DISPLAY_FIELDS)["instruction"])
        clock.advance(0.6)
    assert shown == ["look_at_camera", "come_closer", "look_straight", "hold_still"]
    display = view(board, DISPLAY_FIELDS)
    assert display["cue"] is True and display["face"]["w"] > 0
    assert 0 <= display["face"]["x"] <= 1 and len(display["face"]["eyes"]) == 2
    gate.fire(Event.FRAME_SENT)
    gate.grant("match")
    display = view(board, DISPLAY_FIELDS)
    assert display["instruction"] == "proceed" and display["seat"] == "12A"
    assert display["face"] is None and display["cue"] is False


def test_a_quality_instruction_dwells_before_the_next_one(rig) -> None:
    board, gate, _, clock, _, _ = rig
    gate.fire(Event.PASS_SCANNED)
    board.capture_progress(progress("inter_eye_distance"))
    clock.advance(0.1)
    board.capture_progress(progress("yaw"))  # too soon: "come closer" stays up
    assert view(board)["instruction"] == "come_closer"
    clock.advance(0.5)
    board.capture_progress(progress("yaw"))
    assert view(board)["instruction"] == "look_straight"
    gate.refer("no usable face", Event.NO_USABLE_FACE)  # the gate's state wins at once
    assert view(board)["instruction"] == "see_agent"


def test_referral_reasons_counters_and_alerts(rig) -> None:
    board, gate, link, _, card, health = rig
    card["now"] = TravellerCard(1, "X/Y", "3C", "BA283", PassOutcome.ALREADY_BOARDED, 1, 0, None)
    gate.fire(Event.PASS_REFUSED, "already boarded")
    agent = view(board)
    assert agent["referral"] == "already_boarded" and "already_boarded" in agent["alerts"]
    assert agent["traveller"]["name"] == "X/Y" and agent["actions"] == ["release", "cancel"]
    gate.agent_cancel()
    card["now"] = None
    gate.fire(Event.CAPTURE_STARTED)  # biometric-style: two faces in view
    board.capture_progress(progress("single_face", faces=2))
    assert "two_faces" in view(board)["alerts"]
    link.emit(OptOutPressed())
    agent = view(board)
    assert agent["referral"] == "opted_out" and agent["phase"] == "manual_check"
    gate.agent_release()
    health.add(Alert.LEDGER_NOT_DURABLE)
    board.refresh()
    agent = view(board)
    assert agent["counters"] == {"boarded": 1, "referred": 1, "opt_outs": 1, "manual_checks": 1}
    assert agent["alerts"] == ["ledger_not_durable", "two_faces"]
    link.emit(DoorChanged(True))
    link.emit(DoorChanged(False))
    assert view(board)["alerts"] == ["ledger_not_durable"]  # the traveller's alerts end


def test_views_keep_traveller_data_off_the_display_and_the_summary(rig) -> None:
    board, gate, _, _, card, _ = rig
    card["now"] = CARD
    gate.fire(Event.PASS_SCANNED)
    board.agent_acted("A123", "cancel", "start_again")
    for fields in (DISPLAY_FIELDS, SUMMARY_FIELDS):
        text = repr(view(board, fields))
        assert "OBAMA" not in text and "A123" not in text and "12A" not in text
    assert "OBAMA" in repr(view(board, AGENT_FIELDS))


def test_target_outline_is_centred_and_sized_from_the_threshold() -> None:
    small, large = target_outline((720, 720), 20.0), target_outline((720, 720), 40.0)
    assert (small.cx, small.cy) == (0.5, 0.5) and small.rx < large.rx
    assert target_outline((720, 720), 1000.0).rx == 0.45  # never beyond the picture


def test_the_outline_grows_for_a_second_look(rig) -> None:
    """A second look needs a nearer face than the one sent: the outline on the display
    shows that size, and the next traveller's capture the usual one again."""
    board, gate, *_ = rig
    gate.fire(Event.CAPTURE_STARTED)
    board.capture_progress(progress(None))
    usual = view(board, DISPLAY_FIELDS)["target"]["rx"]
    board.capture_progress(progress(None, min_inter_eye_px=70.0))
    nearer = view(board, DISPLAY_FIELDS)["target"]["rx"]
    assert nearer > 2 * usual
    board.capture_progress(progress(None))
    assert view(board, DISPLAY_FIELDS)["target"]["rx"] == usual


def test_streams_wake_on_publish_and_end_on_close(rig) -> None:
    board, gate, *_ = rig

    async def follow() -> list[str]:
        board.attach(asyncio.get_running_loop())
        seq, state = board.snapshot(DISPLAY_FIELDS)
        seen = [state["instruction"]]
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, gate.fire, Event.PASS_SCANNED)
        newer = await board.wait_newer(seq, DISPLAY_FIELDS, timeout=10)
        assert newer is not None
        seen.append(newer[1]["instruction"])
        loop.call_later(0.05, board.close)
        await board.wait_newer(newer[0], DISPLAY_FIELDS, timeout=10)
        assert board.closed
        return seen

    assert asyncio.run(follow()) == ["scan_pass", "look_at_camera"]

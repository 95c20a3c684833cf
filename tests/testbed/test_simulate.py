"""`gatectl simulate` on the packaged demo photos: counts add up, each kind ends as it should."""

from __future__ import annotations

import json
import sys

import pytest

from testbed import simulate
from testbed.simulate import plan, run_simulation

MIX = {"enrolled": 3, "not_on_flight": 1, "opt_out": 2, "bad_scan": 1, "two_faces": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_photos):
    work = tmp_path_factory.mktemp("simulate")
    summary = run_simulation(8, None, mix=MIX, seed=3, work=work)
    return summary, work


def test_counts_add_up(run):
    summary, _ = run
    assert summary["travellers"] == 8
    assert summary["granted"] + summary["referred"] + summary["manual_check"] == 8
    assert summary["other"] == 0
    assert summary["mix"] == {k: v for k, v in MIX.items()}
    assert summary["bad_scans"] == 1
    # grants and agent releases each pulsed the relay once
    assert summary["relay_pulses"] == summary["granted"] + summary["released_by_agent"]


def test_each_kind_ends_as_it_should(run):
    by_kind = run[0]["outcomes_by_kind"]
    assert by_kind["enrolled"] == {"granted": 3}
    assert by_kind["bad_scan"] == {"granted": 1}
    assert by_kind["not_on_flight"] == {"referred": 1}
    assert by_kind["opt_out"] == {"manual_check": 2}
    assert by_kind["two_faces"] == {"referred": 1}


def test_rates_and_times(run):
    summary, work = run
    records = [json.loads(line) for line in (work / "boarding-log.jsonl").read_text().splitlines()]
    assert len(records) == 8
    # everyone but the two opt-outs and the two-faces traveller had a frame sent
    assert summary["frames_sent"] == 5
    assert summary["capture_rate"] == 1.0  # of the 5 alone in front of the camera
    assert summary["two_faces_sent"] == 0  # "one at a time": refused, not a failed capture
    # the three enrolled and the rescanned traveller were all granted
    assert (summary["genuine_travellers"], summary["genuine_referred"]) == (4, 0)
    assert summary["genuine_referral_rate"] == 0.0
    assert summary["seconds_per_traveller_p50"] > 0  # measured; its size is for benchmarks
    assert summary["travellers_per_minute"] > 0
    assert all(r["gate_ms"] is not None and r["gate_ms"] >= 0 for r in records)
    released = [r for r in records if r["released_by_agent"]]
    assert len(released) == summary["released_by_agent"] == 3  # two opt-outs, two faces
    assert all(r["resolution"] in ("door_closed", "agent_cancel") for r in records)


def test_boarding_log_of_the_run_holds_no_image(run):
    _, work = run
    raw = (work / "boarding-log.jsonl").read_bytes()
    assert raw.isascii() and b"\xff\xd8" not in raw and b"PNG" not in raw
    assert max(len(line) for line in raw.splitlines()) < 2000


def test_plan_gives_exact_counts_and_refuses_bad_mixes():
    kinds = plan(200, None, 0)
    assert len(kinds) == 200
    assert kinds.count("not_on_flight") == 20 and kinds.count("opt_out") == 16
    assert plan(200, None, 0) == kinds and plan(200, None, 1) != kinds
    with pytest.raises(ValueError):
        plan(10, {"martians": 1.0}, 0)
    with pytest.raises(ValueError):
        plan(10, {"opt_out": -1}, 0)


def test_simulate_main_prints_the_summary_last(monkeypatch, capsys):
    seen = {}

    def fake(
        travellers,
        dataset,
        *,
        mix,
        seed,
        emit,
        recognizer,
        photos_per_traveller,
        interpreter,
        progress,
    ):
        seen.update(
            travellers=travellers,
            mix=mix,
            seed=seed,
            recognizer=recognizer,
            interpreter=interpreter,
            progress_shown=progress.shown,
        )
        return {"travellers": travellers, "granted": travellers}

    monkeypatch.setattr(simulate, "run_simulation", fake)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
    assert simulate.simulate_main(5, None, True, {"opt_out": 1.0}, 7) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["travellers"] == 5
    assert seen == {
        "travellers": 5,
        "mix": {"opt_out": 1.0},
        "seed": 7,
        "recognizer": "dlib",
        "interpreter": "cpython",
        "progress_shown": False,  # --json: no bar, even on a terminal
    }


def test_the_opt_in_recognizer_boards_and_refers_through_the_real_parts(tmp_path, demo_photos):
    from tests.support import require_recognizer

    require_recognizer("mobilefacenet")
    mix = {"enrolled": 2, "not_on_flight": 1}
    summary = run_simulation(3, None, mix=mix, seed=1, work=tmp_path, recognizer="mobilefacenet")
    assert summary["recognizer"].startswith("mobilefacenet-192/")
    assert summary["outcomes_by_kind"] == {
        "enrolled": {"granted": 2},
        "not_on_flight": {"referred": 1},
    }
    assert summary["genuine_referral_rate"] == 0.0


@pytest.mark.micropython
def test_a_flight_boards_with_the_firmware_on_micropython(tmp_path, demo_photos):
    """The whole appliance against the firmware running on the real MicroPython."""
    mix = {"enrolled": 2, "opt_out": 1}
    summary = run_simulation(3, None, mix=mix, seed=5, work=tmp_path, interpreter="micropython")
    assert summary["firmware_interpreter"] == "micropython"
    assert summary["outcomes_by_kind"] == {
        "enrolled": {"granted": 2},
        "opt_out": {"manual_check": 1},
    }
    assert summary["relay_pulses"] == summary["granted"] + summary["released_by_agent"] == 3


@pytest.mark.parametrize(
    ("first", "second"),
    [("biden.jpg", "astronaut.png"), ("astronaut.png", "obama2.jpg"), ("obama3.jpg", "biden.jpg")],
)
def test_two_people_side_by_side_are_companions_not_someone_behind(demo_photos, first, second):
    """The cause of a two-faces traveller granted (seed 0 of 50): the second photo was
    shrunk to fit its half of the frame, so its face was 0.42 of the first one's area,
    which the gate rightly takes for someone queueing behind. Side by side, both faces
    must be the same size: a companion, "one at a time"."""
    from appliance.vision.detectors import create_detector
    from appliance.vision.quality import QualityThresholds

    source = simulate.TwoFacesSource(demo_photos / first, demo_photos / second)
    frame = source.read()
    try:
        faces = create_detector().detect(frame)
    finally:
        source.close()
        frame.fill(0)
    assert len(faces) == 2
    small, large = sorted(face.area for face in faces)
    assert small / large >= QualityThresholds().second_face_area_ratio
    assert min(f.width for f in faces) >= 0.8 * simulate.SIDE_BY_SIDE_FACE_PX


def test_two_faces_in_the_frame_are_never_granted(tmp_path, demo_photos):
    summary = run_simulation(6, None, mix={"two_faces": 1.0}, seed=0, work=tmp_path)
    assert summary["outcomes_by_kind"] == {"two_faces": {"referred": 6}}
    assert summary["frames_sent"] == 0

"""Exposure tracks: the scene format's ``video_ev+1.avi``, the bench's camera that switches
between them, the generator that films them, and the bench driving them through the
service's face-metered exposure (real videos through OpenCV, the real detector)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.vision.camera import ReplaySource
from testbed.bench.exposure_tracks import ExposureTracks
from testbed.scene_format import SceneFormatError, exposure_tracks, track_name
from tests.support import gatectl, record_outputs


def _video(path: Path, levels: list[int]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for level in levels:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def _figures(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tracks_are_found_by_name_and_odd_names_are_ignored(tmp_path: Path) -> None:
    with pytest.raises(SceneFormatError, match="no video"):
        exposure_tracks(tmp_path)
    for name in ("video.avi", "video_ev+1.avi", "video_ev-0.5.mp4", "video_ev+9.avi",
                 "video_ev1.avi", "video_ev+1.avi.part", "video_ev+0.avi", "video_ev+0.125.avi",
                 "video_ev+12.avi"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "video_ev+2.avi").mkdir()
    tracks = exposure_tracks(tmp_path)
    assert tracks == {
        -0.5: tmp_path / "video_ev-0.5.mp4",
        0.0: tmp_path / "video.avi",
        1.0: tmp_path / "video_ev+1.avi",
    }
    assert track_name(1.0) == "video_ev+1.avi" and track_name(-0.5) == "video_ev-0.5.avi"


def test_a_request_switches_to_the_nearest_track_after_the_camera_settles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = record_outputs(monkeypatch, ReplaySource, "read")
    dark = _video(tmp_path / "video.avi", [40] * 12)
    bright = _video(tmp_path / "video_ev+1.avi", [160] * 12)
    source = ExposureTracks({0.0: dark, 1.0: bright}, settle_frames=2)
    seen = []
    for index in range(10):
        if index == 3:
            source.set_exposure_compensation(0.4)  # nearer 0: nothing to do
        if index == 4:
            source.set_exposure_compensation(5.0)  # as bright as there is: +1
        frame = source.read()
        seen.append(int(frame.mean()))
        frame.fill(0)
    source.close()
    # asked before the 5th frame: the 5th and 6th settle, the 7th is the brighter track
    assert [level > 100 for level in seen] == [False] * 6 + [True] * 4, seen
    assert source.changes == [(7, 1.0)] and source.ev == 1.0
    assert made and not any(frame.any() for frame in made if frame is not None)
    with pytest.raises(ValueError, match="finite"):
        source.set_exposure_compensation(float("nan"))


def test_tracks_unlike_the_scene_video_are_a_scene_error(tmp_path: Path) -> None:
    scene = _video(tmp_path / "video.avi", [40] * 3)
    short = _video(tmp_path / "short.avi", [160] * 5)
    with pytest.raises(SceneFormatError, match=r"short.avi is 64x48, 5 frames; .* 3 frames"):
        ExposureTracks({0.0: scene, 1.0: short})
    with pytest.raises(ValueError, match="0 stops"):
        ExposureTracks({1.0: short})
    source = ExposureTracks({0.0: scene, 1.0: _video(tmp_path / "b.avi", [160] * 3)})
    frames = [source.read() for _ in range(4)]
    source.close()
    assert [f is None for f in frames] == [False, False, False, True]


@pytest.fixture(scope="module")
def backlit(photos: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tracks")
    made = gatectl(
        "scenes", "make", "--dataset", str(photos), "--out", str(out), "--per-tag", "1",
        "--tags", "backlight,approach", "--seed", "3", "--exposure-track", "1", "--quiet",
        timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    return out


def test_the_generator_films_a_brighter_track_of_the_same_scene(backlit: Path) -> None:
    scene = backlit / "backlight_00"
    truth = json.loads((scene / "truth.json").read_text())
    assert truth["exposure_tracks"]["video_ev+1.avi"] == pytest.approx(
        min(2 * truth["exposure"], truth["camera"]["max_exposure_gain"]), abs=1e-3
    )
    box = next(b for b in reversed(truth["faces"]["traveller"]["boxes"]) if b)
    x0, y0, x1, y1 = (round(v) for v in box)
    means = {}
    for name in ("video.avi", "video_ev+1.avi"):
        capture = cv2.VideoCapture(str(scene / name))
        frames = []
        while (read := capture.read())[0]:
            frames.append(read[1])
        capture.release()
        means[name] = (len(frames), float(frames[-1][y0:y1, x0:x1].mean()))
    (count, base), (count_ev, raised) = means["video.avi"], means["video_ev+1.avi"]
    assert count == count_ev == truth["frames"]
    assert raised > base * 1.2, means  # one stop: about 1.3 times the sRGB level


def test_a_track_the_camera_cannot_reach_is_not_written_and_bad_stops_are_refused(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scenes"
    made = gatectl(
        "scenes", "make", "--dataset", str(photos), "--out", str(out), "--per-tag", "1",
        "--tags", "low_light", "--seed", "3", "--exposure-track", "1", "--quiet", timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    truth = json.loads((out / "low_light_00" / "truth.json").read_text())
    assert truth["exposure"] == pytest.approx(truth["camera"]["max_exposure_gain"], abs=1e-3)
    assert not (out / "low_light_00" / "video_ev+1.avi").exists()
    assert "exposure_tracks" not in truth
    for stops, why in (("0", "exposure tracks must be"), ("9", "exposure tracks must be"),
                       ("0.0001", "quarter stops"), ("0.1234", "quarter stops"),
                       ("nan", "must be a finite number")):  # fmt: skip
        refused = gatectl("scenes", "make", "--dataset", str(photos), "--out",
                          str(tmp_path / stops), "--exposure-track", stops)  # fmt: skip
        assert refused.returncode == 2 and why in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and not (tmp_path / stops).exists()


def test_the_bench_asks_a_backlit_scene_for_more_exposure(backlit: Path, tmp_path: Path) -> None:
    details = tmp_path / "on.jsonl"
    on = _figures(gatectl("bench", "capture", "--scenes", str(backlit), "--json",
                          "--details", str(details), timeout=600))  # fmt: skip
    rows = {row["scene"]: row for row in map(json.loads, details.read_text().splitlines())}
    assert on["face_exposure_ev"] == 1.0 and on["exposure_raised_scenes"] == 1
    (frame, stops), *rest = rows["backlight_00"]["exposure_changes"]
    assert stops == 1.0 and frame > 1 and not rest
    assert rows["approach_00"]["exposure_changes"] == []  # a well-lit face asks for nothing
    assert on["capture_rate"] == 1.0
    off = _figures(gatectl("bench", "capture", "--scenes", str(backlit), "--json",
                           "--face-exposure-ev", "0", timeout=600))  # fmt: skip
    assert off["face_exposure_ev"] == 0.0 and off["exposure_raised_scenes"] == 0
    refused = gatectl("bench", "capture", "--scenes", str(backlit), "--face-exposure-ev", "3")
    assert refused.returncode == 2 and "must be 0 to 2 stops" in refused.stderr

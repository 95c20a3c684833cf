"""`gatectl scenes make` and `gatectl bench capture` end to end, on tiny scenes made in a
temporary folder from the demo photos that set-up fetched (real video files through
OpenCV, the real detector and selection, the real matcher over gRPC for the gallery)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.support import DATASET, REPO, run_with_stderr_on_a_terminal


def gatectl(*args: str, timeout: float = 600, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scenes(photos: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    made = gatectl(
        "scenes", "make", "--dataset", str(photos), "--out", str(out),
        "--per-tag", "1", "--tags", "approach,empty,two_close", "--seed", "3",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    assert "3 scenes in" in made.stdout
    return out


def test_scenes_follow_the_format(scenes: Path) -> None:
    folders = sorted(p.name for p in scenes.iterdir())
    assert folders == ["approach_00", "empty_00", "two_close_00"]
    for name in folders:
        info = json.loads((scenes / name / "scene.json").read_text())
        assert info["expect"] == ("capture" if name == "approach_00" else "no_capture")
        assert info["tags"][0] == name[:-3]
        assert (scenes / name / "video.avi").stat().st_size > 100_000
        truth = json.loads((scenes / name / "truth.json").read_text())
        assert truth["fps"] == 30 and truth["size"] == [1280, 720]
    approach = json.loads((scenes / "approach_00" / "scene.json").read_text())
    assert approach["identity"] in ("obama", "biden") and approach["photo"].endswith(".jpg")
    boxes = json.loads((scenes / "approach_00" / "truth.json").read_text())["faces"]
    widths = [b[2] - b[0] for b in boxes["traveller"]["boxes"] if b]
    assert widths[0] < 60 and widths[-1] > 130, "the face grows as the traveller walks up"


def test_the_bench_captures_the_traveller_and_nobody_else(scenes: Path, tmp_path: Path) -> None:
    details = tmp_path / "details.jsonl"
    figures = last_json(
        gatectl("bench", "capture", "--scenes", str(scenes), "--json", "--details", str(details))
    )
    assert figures["scenes"] == 3 and figures["scene_errors"] == 0
    assert figures["capture_rate"] == 1.0 and figures["false_captures"] == 0
    assert figures["wrong_person_captures"] == 0
    assert 0.5 < figures["time_to_capture_s_p50"] < 3.4  # within the walk, not at once
    assert figures["by_tag"]["approach"]["rate"] == 1.0
    assert figures["by_tag"]["two_close"]["captured"] == 0
    assert figures["frames"] > 150 and 0 < figures["ms_per_frame_median"] < 1000
    assert figures["tracking"] is True and "zone" in figures["cpu_ms_by_search"]
    rows = {row["scene"]: row for row in map(json.loads, details.read_text().splitlines())}
    assert rows["approach_00"]["outcome"] == "captured"
    assert rows["approach_00"]["whose_face"] == "traveller"
    assert rows["empty_00"]["outcome"] == "not_captured"


def test_a_bar_on_a_terminal_and_none_with_json(scenes: Path) -> None:
    bench = [sys.executable, "-m", "appliance", "bench", "capture", "--scenes", str(scenes)]
    quiet = run_with_stderr_on_a_terminal([*bench, "--json"])
    assert quiet.returncode == 0, quiet.terminal[-2000:]
    assert json.loads(quiet.stdout.splitlines()[-1])["scenes"] == 3
    assert "scenes:" not in quiet.terminal and "\r" not in quiet.terminal, quiet.terminal
    shown = run_with_stderr_on_a_terminal(bench)
    assert shown.returncode == 0, shown.terminal[-2000:]
    assert "scenes:" in shown.terminal and "/3 [" in shown.terminal, shown.terminal
    # stdout is the scene lines and the figures, untorn by the bar (which is on stderr)
    assert "approach_00: captured" in shown.stdout and "\r" not in shown.stdout


def test_without_tracking_the_same_scenes_give_the_same_captures(scenes: Path) -> None:
    figures = last_json(gatectl("bench", "capture", "--scenes", str(scenes), "--json",
                                "--no-tracking"))  # fmt: skip
    assert figures["tracking"] is False and set(figures["cpu_ms_by_search"]) == {"zone"}
    assert figures["capture_rate"] == 1.0 and figures["false_captures"] == 0


def test_a_bad_scene_is_reported_and_the_run_goes_on(scenes: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good").symlink_to(scenes / "approach_00", target_is_directory=True)
    (mixed / "no_json").mkdir()
    (mixed / "no_json" / "video.avi").symlink_to(scenes / "empty_00" / "video.avi")
    (mixed / "bad_json").mkdir()
    (mixed / "bad_json" / "scene.json").write_text('{"expect": "maybe"}')
    (mixed / "no_video").mkdir()
    (mixed / "no_video" / "scene.json").write_text('{"expect": "capture", "identity": "x"}')
    (mixed / "not_a_video").mkdir()
    (mixed / "not_a_video" / "scene.json").write_text('{"expect": "no_capture", "tags": []}')
    (mixed / "not_a_video" / "video.avi").write_bytes(b"this is not a video")
    details = tmp_path / "details.jsonl"
    run = gatectl("bench", "capture", "--scenes", str(mixed), "--details", str(details))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    rows = {row["scene"]: row for row in map(json.loads, details.read_text().splitlines())}
    assert rows["good"]["outcome"] == "captured"
    assert "no scene.json" in rows["no_json"]["error"]
    assert '"expect"' in rows["bad_json"]["error"]
    assert "no video" in rows["no_video"]["error"]
    assert rows["not_a_video"]["outcome"] == "error" and rows["not_a_video"]["error"]
    assert "scene_errors: 4" in run.stdout.replace("  ", "").replace(" :", ":")


def test_usage_errors_are_one_line_not_a_traceback(tmp_path: Path, photos: Path) -> None:
    missing = gatectl("bench", "capture", "--scenes", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "is not a folder of scenes" in missing.stderr
    assert "Traceback" not in missing.stderr
    inside = gatectl("scenes", "make", "--dataset", str(photos), "--out", str(REPO / "scenes"))
    assert inside.returncode == 2 and "git work tree" in inside.stderr
    assert not (REPO / "scenes").exists(), "nothing may be written into the repository"
    tag = gatectl("scenes", "make", "--dataset", str(photos), "--out", str(tmp_path / "o"),
                  "--tags", "sunshine")  # fmt: skip
    assert tag.returncode == 2 and "unknown tag" in tag.stderr


def test_a_folder_with_no_usable_photo_is_left_out_and_the_run_goes_on(
    tmp_path: Path, photos: Path
) -> None:
    """A dataset as people hand it over: one folder holds no image at all, another only a
    photo too small to find a face in once scaled. They are named on stderr, left out of
    the cast, and the scenes are made of the others (the first such folder ended the run)."""
    dataset = tmp_path / "dataset"
    for identity in ("obama", "biden"):
        (dataset / identity).mkdir(parents=True)
        for photo in (photos / identity).iterdir():
            (dataset / identity / photo.name).symlink_to(photo.resolve())
    (dataset / "not_a_photo").mkdir()
    (dataset / "not_a_photo" / "passport.jpg").write_bytes(b"not an image")
    (dataset / "too_small").mkdir()  # its face is found, then lost once scaled up
    small = cv2.resize(cv2.imread(str(photos / "biden" / "biden.jpg")), (40, 40))
    cv2.imwrite(str(dataset / "too_small" / "tiny.jpg"), small)
    made = gatectl(
        "scenes", "make", "--dataset", str(dataset), "--out", str(tmp_path / "out"),
        "--per-tag", "4", "--tags", "approach", "--seed", "3", "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    assert "not_a_photo left out: no usable photo" in made.stderr
    assert "too_small left out: no usable photo" in made.stderr
    assert "4 scenes in" in made.stdout
    cast = {
        json.loads((d / "scene.json").read_text())["identity"] for d in (tmp_path / "out").iterdir()
    }
    assert cast == {"obama", "biden"}
    for identity in ("obama", "biden"):
        (dataset / identity).rename(tmp_path / identity)
    none_left = gatectl("scenes", "make", "--dataset", str(dataset), "--out",
                        str(tmp_path / "o2"), "--tags", "approach")  # fmt: skip
    assert none_left.returncode == 2 and "Traceback" not in none_left.stderr
    assert "has a photo with a face found" in none_left.stderr


def test_the_gallery_verifies_the_capture_through_the_matcher(scenes: Path, photos) -> None:
    # a relative --gallery, as a technician types it (its photos were once taken as
    # relative to the bench's own temporary manifest, and refused)
    figures = last_json(
        gatectl("bench", "capture", "--scenes", str(scenes), "--gallery", photos.name, "--json",
                cwd=photos.parent)
    )  # fmt: skip
    assert figures["verified_scenes"] == 1  # the one traveller, enrolled from another photo
    assert figures["right_person_rate"] in (0.0, 1.0)
    assert figures["matcher_own_rate"] in (0.0, 1.0)
    assert figures["nearest_frame_rate"] in (0.0, 1.0)
    assert figures["right_person_rate"] >= figures["right_person_first_capture_rate"]
    assert figures["retaken_scenes"] in (0, 1)


def test_a_scene_whose_identity_the_gallery_lacks_is_named_not_counted_a_miss(
    scenes: Path, photos: Path, tmp_path: Path
) -> None:
    """Someone's own scenes and gallery, with a name spelt two ways: that scene is said to
    be not in the gallery, nothing is sent for it, and the rates leave it out (it was
    shown as one capture sent and silently dropped from the rates)."""
    import shutil

    own = tmp_path / "scenes"
    shutil.copytree(scenes / "approach_00", own / "enrolled")
    shutil.copytree(scenes / "approach_00", own / "misspelt")
    info = json.loads((own / "misspelt" / "scene.json").read_text())
    (own / "misspelt" / "scene.json").write_text(
        json.dumps({**info, "identity": info["identity"].upper()})
    )
    details = tmp_path / "details.jsonl"
    run = gatectl("bench", "capture", "--scenes", str(own), "--gallery", str(photos),
                  "--details", str(details))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"(not verified: {info['identity'].upper()!r} is not in the gallery)" in run.stdout
    assert "scenes_not_in_gallery: 1" in run.stdout and "verified_scenes: 1" in run.stdout
    rows = {row["scene"]: row for row in map(json.loads, details.read_text().splitlines())}
    assert rows["misspelt"]["captures_sent"] == 0 and rows["misspelt"]["verified"] is None
    assert rows["enrolled"]["captures_sent"] >= 1


def test_a_capture_that_is_not_verified_is_taken_again_as_the_service_does(scenes: Path):
    """The bench's verify follows the service's second look: the matcher says no, the
    same scene goes on to a nearer face, sent once more, and no more than that."""
    from appliance.service.config import VisionConfig
    from appliance.service.parts import vision_parts
    from appliance.vision.quality import QualityThresholds
    from appliance.vision.selection import FrameSelector
    from testbed.bench.capture import run_scene

    detector, rules = vision_parts(VisionConfig())
    sizes: list[float] = []

    def never(identity: str, selection) -> bool:
        sizes.append(selection.report.measures["inter_eye_distance"])
        assert selection.frame.any()  # the frame being sent, not yet purged
        return False

    selector = FrameSelector(detector, QualityThresholds(), rules)
    result = run_scene(scenes / "approach_00", selector, never)
    assert result.outcome == "captured" and result.verified is False
    assert result.captures_sent == len(sizes) == rules.attempts == 2
    assert sizes[1] >= rules.retake_growth * sizes[0]
    assert "retaken" in result.windows and result.time_to_verified_s is None


def test_the_nearest_frame_is_the_widest_traveller_face_sent_as_a_capture(scenes: Path):
    """``nearest_frame_rate``: the frame of truth.json's widest traveller box, found by
    the real detector there and sent as the gate would send it, then wiped."""
    from appliance.service.config import VisionConfig
    from appliance.service.parts import vision_parts
    from appliance.vision.detectors.base import iou
    from testbed.bench.capture import SceneResult, _nearest_index, _verify_nearest_frame

    folder = scenes / "approach_00"
    boxes = json.loads((folder / "truth.json").read_text())["faces"]["traveller"]["boxes"]
    widest = max(  # the last of the widest, as the bench takes it
        range(len(boxes)), key=lambda i: (boxes[i][2] - boxes[i][0], i) if boxes[i] else (0, i)
    )
    sent = []

    class Reference:
        def enrolled(self, identity):
            return True

        def verify_capture(self, identity, selection):
            sent.append((identity, selection.frame_index, selection.report.face.box))
            self.frame = selection.frame
            assert selection.frame.any()
            return True

    reference = Reference()
    result = SceneResult("approach_00", expect="capture", identity="someone")
    detector, rules = vision_parts(VisionConfig())
    _verify_nearest_frame(reference, result, folder, detector, rules)

    ((identity, index, box),) = sent
    assert identity == "someone" and index == widest + 1 and result.nearest_verified is True
    assert iou(box, tuple(boxes[widest])) >= 0.3
    assert not reference.frame.any()  # wiped once answered
    for broken in ({"faces": {"traveller": {"boxes": [[1, 2], "x", None]}}}, {"faces": {}}):
        assert _nearest_index(broken) is None  # a bad truth.json: no figure, no traceback


@pytest.mark.capture_bench
@pytest.mark.skipif(not DATASET.is_dir(), reason=f"faces-dev not found at {DATASET}")
def test_faces_dev_scenes_meet_the_capture_goals(tmp_path: Path) -> None:
    """One scene per tag from faces-dev: every traveller captured, nobody else."""
    out = tmp_path / "scenes"
    made = gatectl("scenes", "make", "--dataset", str(DATASET), "--out", str(out),
                   "--per-tag", "1", "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    figures = last_json(gatectl("bench", "capture", "--scenes", str(out), "--json"))
    assert figures["scenes"] == 12 and figures["capture_rate"] == 1.0
    assert figures["false_captures"] == 0 and figures["wrong_person_captures"] == 0

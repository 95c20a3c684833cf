"""Unit tests for appliance.vision.camera.ReplaySource on synthetic images and video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from appliance.errors import CameraError
from appliance.vision.camera import ReplaySource, place_in_canvas


def synthetic(h: int, w: int, value: int) -> np.ndarray:
    """Flat colour with a bright square: survives lossless formats exactly."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (value, 255 - value, (value * 3) % 256)
    image[h // 4 : h // 2, w // 4 : w // 2] = 250
    return image


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "stills"
    folder.mkdir()
    for i, (name, h, w) in enumerate([("a.png", 40, 60), ("b.bmp", 50, 30), ("c.png", 24, 24)]):
        assert cv2.imwrite(str(folder / name), synthetic(h, w, 40 * (i + 1)))
    (folder / "notes.txt").write_text("not an image")
    return folder


def drain(source: ReplaySource, limit: int = 1000) -> list[np.ndarray]:
    frames = []
    for _ in range(limit):
        frame = source.read()
        if frame is None:
            return frames
        frames.append(frame)
    raise AssertionError("source never ended")


@pytest.mark.parametrize("repeat", [1, 3])
def test_folder_replays_each_image_repeat_times(image_folder: Path, repeat: int) -> None:
    source = ReplaySource(image_folder, repeat=repeat)
    frames = drain(source)
    assert len(frames) == 3 * repeat
    expected = [synthetic(40, 60, 40), synthetic(50, 30, 80), synthetic(24, 24, 120)]
    for index, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, expected[index // repeat])
    assert source.read() is None  # stays ended
    source.close()


def test_repeat_below_one_shows_each_image_once(image_folder: Path) -> None:
    assert len(drain(ReplaySource(image_folder, repeat=0))) == 3


def test_list_of_images_keeps_given_order(image_folder: Path) -> None:
    paths = [image_folder / "c.png", image_folder / "a.png"]
    frames = drain(ReplaySource(paths, repeat=2))
    assert [f.shape[:2] for f in frames] == [(24, 24)] * 2 + [(40, 60)] * 2


def test_canvas_placement_gives_canvas_size(image_folder: Path) -> None:
    frames = drain(ReplaySource(image_folder, canvas=(160, 120), repeat=2))
    assert len(frames) == 6
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)
    first = frames[0]
    assert (first[0, 0] == 118).all()  # grey surround
    np.testing.assert_array_equal(first[40:80, 50:110], synthetic(40, 60, 40))  # centred


def test_canvas_scales_down_large_images(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), synthetic(400, 300, 90))
    (frame,) = drain(ReplaySource([path], canvas=(200, 100)))
    assert frame.shape == (100, 200, 3)


@settings(max_examples=60, deadline=None)
@given(
    image_hw=st.tuples(st.integers(4, 300), st.integers(4, 300)),
    canvas_wh=st.tuples(st.integers(16, 320), st.integers(16, 320)),
    face_scale=st.floats(0.3, 2.0),
)
def test_place_in_canvas_property(
    image_hw: tuple[int, int], canvas_wh: tuple[int, int], face_scale: float
) -> None:
    height, width = image_hw
    scale = min(face_scale, canvas_wh[0] / width, canvas_wh[1] / height)
    assume(min(height, width) * scale >= 1.5)  # degenerate slivers: see the xfail below
    image = synthetic(height, width, 77)
    canvas = place_in_canvas(image, canvas_wh, face_scale)
    assert canvas.shape == (canvas_wh[1], canvas_wh[0], 3)
    assert canvas.dtype == np.uint8
    assert canvas.any()


def test_place_in_canvas_very_elongated_image() -> None:
    canvas = place_in_canvas(synthetic(4, 128, 77), (16, 16))
    assert canvas.shape == (16, 16, 3)


def write_video(path: Path, count: int, size: tuple[int, int] = (64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(count):
        writer.write(synthetic(size[1], size[0], (i * 20) % 256))
    writer.release()


def test_video_replays_its_frame_count(tmp_path: Path) -> None:
    path = tmp_path / "scene.avi"
    write_video(path, 7)
    source = ReplaySource(path)
    frames = drain(source)
    source.close()
    assert len(frames) == 7
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[1])  # distinct content survived MJPG


def test_video_frames_are_distinct_arrays(tmp_path: Path) -> None:
    path = tmp_path / "scene.avi"
    write_video(path, 3)
    source = ReplaySource(path)
    first = source.read()
    assert first is not None
    first.fill(0)
    second = source.read()
    assert second is not None
    assert not np.shares_memory(first, second)
    assert second.any()
    source.close()


def test_missing_path_raises_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError):
        ReplaySource(tmp_path / "does-not-exist")


def test_unreadable_video_raises_camera_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.avi"
    path.write_bytes(b"this is not a video")
    with pytest.raises(CameraError):
        source = ReplaySource(path)
        # Some OpenCV backends open anything and fail on read instead.
        if source.read() is None:
            raise CameraError("no frames")


def test_unreadable_image_raises_camera_error(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    source = ReplaySource(folder)
    with pytest.raises(CameraError, match="cannot read image"):
        source.read()


def test_empty_folder_ends_at_once(tmp_path: Path) -> None:
    assert ReplaySource(tmp_path).read() is None


@pytest.mark.parametrize("canvas", [None, (100, 80)])
def test_each_read_is_a_distinct_array(image_folder: Path, canvas) -> None:
    source = ReplaySource(image_folder, repeat=3, canvas=canvas)
    first = source.read()
    assert first is not None
    snapshot = first.copy()
    first[:] = 7
    second = source.read()
    assert second is not None
    assert second is not first
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(second, snapshot)
    source.close()


def test_close_zeroizes_the_held_image(image_folder: Path) -> None:
    source = ReplaySource(image_folder, repeat=5)
    assert source.read() is not None
    held = source._current
    assert held is not None and held.any()
    source.close()
    assert not held.any()
    assert source._current is None


def test_advancing_zeroizes_the_previous_image(image_folder: Path) -> None:
    source = ReplaySource(image_folder, repeat=1)
    source.read()
    held = source._current
    assert held is not None and held.any()
    source.read()
    assert not held.any()
    source.close()

"""Live camera sources: reconnecting wrapper, OpenCV on a real video file, the spec factory,
replay pacing and the latest-frame pump. Time is a fake clock wherever behaviour depends
on it; threads are awaited by polling with a timeout, never by measuring wall time."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.errors import CameraError
from appliance.vision import camera
from appliance.vision.camera import (
    CameraSpec,
    CameraState,
    OpenCVSource,
    Picamera2Source,
    ReconnectingSource,
    ReplaySource,
    bgr_frame,
    live_camera,
    parse_camera_spec,
)
from appliance.vision.frame_pump import FramePump, open_source
from testbed.testing import FakeClock

STREAMING, RECONNECTING = CameraState.STREAMING, CameraState.RECONNECTING


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def drain(source, limit: int = 10_000) -> list[np.ndarray]:
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
        assert len(frames) < limit, "source never ended"
    return frames


def in_backoff_wait(source: ReconnectingSource) -> bool:
    """A thread is asleep in the default (close-interruptible) backoff wait."""
    return bool(source._closing._cond._waiters)


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"non-blocking source slept {seconds}s")


class FlakyWorld:
    """A camera that can be unplugged: opens fail while ``fail_opens`` > 0, and open
    sessions fail on read (raise, or deliver nothing) while ``broken``."""

    def __init__(self, fail_opens: int = 0, failure: str = "raise") -> None:
        self.fail_opens = fail_opens
        self.failure = failure
        self.broken = False
        self.counter = 0
        self.sessions: list[FlakySession] = []

    def open(self) -> FlakySession:
        if self.fail_opens > 0:
            self.fail_opens -= 1
            raise CameraError("no such device /dev/video0")
        session = FlakySession(self)
        self.sessions.append(session)
        return session


class FlakySession:
    def __init__(self, world: FlakyWorld) -> None:
        self.world = world
        self.closed = False

    def read(self) -> np.ndarray | None:
        assert not self.closed, "read after close"
        if self.world.broken:
            if self.world.failure == "raise":
                raise OSError(19, "No such device")
            return None
        self.world.counter += 1
        return np.full((4, 4, 3), (self.world.counter - 1) % 250 + 1, np.uint8)

    def close(self) -> None:
        self.closed = True


def fake_reconnecting(world: FlakyWorld, clock: FakeClock, **kwargs) -> ReconnectingSource:
    kwargs.setdefault("sleep", clock.sleep)
    return ReconnectingSource(
        world.open, backoff_initial=0.1, backoff_max=1.0, clock=clock, **kwargs
    )


# -- ReconnectingSource -------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["raise", "none"])
def test_reconnects_with_growing_backoff_and_recovers(failure: str) -> None:
    world, clock = FlakyWorld(fail_opens=2, failure=failure), FakeClock()
    source = fake_reconnecting(world, clock)
    states: list[CameraState] = []
    source.on_state(states.append)
    assert source.state is CameraState.CONNECTING

    assert source.read() is None  # first open fails at once
    assert source.state is CameraState.CONNECTING
    assert "no such device" in (source.last_error or "")
    assert source.read() is None  # waits 0.1, fails again
    frame = source.read()  # waits 0.2, opens
    assert frame is not None and frame[0, 0, 0] == 1
    assert clock.sleeps == pytest.approx([0.1, 0.2])
    assert source.state is STREAMING and source.reconnects == 0
    assert source.read()[0, 0, 0] == 2

    world.broken = True  # unplugged mid-stream
    assert source.read() is None
    assert source.state is RECONNECTING
    assert world.sessions[0].closed
    assert source.last_error
    world.broken, world.fail_opens = False, 5  # plugged back in after 5 failed opens
    clock.sleeps.clear()
    frames = [source.read() for _ in range(6)]
    assert all(f is None for f in frames[:5])
    assert frames[5] is not None and frames[5][0, 0, 0] == 3
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])  # doubles, capped
    assert source.state is STREAMING
    assert source.reconnects == 1
    assert states == [STREAMING, RECONNECTING, STREAMING]
    assert source.attempts == 3 + 6
    assert len(world.sessions) == 2

    # After recovery the backoff starts small again.
    world.broken = True
    assert source.read() is None
    world.broken = False
    clock.sleeps.clear()
    assert source.read() is not None
    assert clock.sleeps == pytest.approx([0.1])
    assert source.reconnects == 2
    assert states == [STREAMING, RECONNECTING, STREAMING, RECONNECTING, STREAMING]

    source.close()
    assert source.state is CameraState.CLOSED
    assert states[-1] is CameraState.CLOSED
    assert all(s.closed for s in world.sessions)
    assert source.read() is None


def test_nonblocking_returns_none_until_the_attempt_is_due() -> None:
    world, clock = FlakyWorld(fail_opens=2), FakeClock()
    source = fake_reconnecting(world, clock, sleep=no_sleep, nonblocking=True)
    assert source.read() is None
    assert source.attempts == 1
    assert source.read() is None  # not due yet: no attempt, no sleep
    clock.advance(0.05)
    assert source.read() is None
    assert source.attempts == 1
    clock.advance(0.06)
    assert source.read() is None  # second attempt, fails
    assert source.attempts == 2
    clock.advance(0.19)
    assert source.read() is None
    assert source.attempts == 2
    clock.advance(0.02)
    assert source.read() is not None
    assert source.attempts == 3
    assert source.state is STREAMING
    world.broken = True
    assert source.read() is None
    assert source.state is RECONNECTING
    world.broken = False
    assert source.read() is None  # reconnect not due yet
    clock.advance(0.1)
    assert source.read() is not None
    assert source.reconnects == 1
    source.close()


def test_unexpected_errors_are_not_swallowed() -> None:
    def broken_factory():
        raise ValueError("bug in the factory")

    source = ReconnectingSource(broken_factory, clock=FakeClock(), sleep=no_sleep)
    with pytest.raises(ValueError, match="bug"):
        source.read()


def test_a_failing_state_callback_does_not_stop_the_camera() -> None:
    world, clock = FlakyWorld(), FakeClock()
    source = fake_reconnecting(world, clock)
    seen: list[CameraState] = []

    @source.on_state
    def explode(state: CameraState) -> None:
        raise RuntimeError("observer bug")

    source.on_state(seen.append)
    assert source.read() is not None
    assert seen == [STREAMING]
    source.close()


def test_close_from_another_thread_wakes_a_reconnect_wait() -> None:
    world = FlakyWorld(fail_opens=10**6)
    source = ReconnectingSource(world.open, backoff_initial=60.0, backoff_max=60.0)
    results: list[object] = []
    reader = threading.Thread(
        target=lambda: results.extend([source.read(), source.read()]), daemon=True
    )
    reader.start()
    wait_until(lambda: in_backoff_wait(source))
    source.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert results == [None, None]
    assert source.attempts == 1
    assert source.state is CameraState.CLOSED


def test_bad_backoff_is_rejected() -> None:
    with pytest.raises(ValueError):
        ReconnectingSource(FlakyWorld().open, backoff_initial=2.0, backoff_max=1.0)


# -- OpenCV on a real video file ------------------------------------------------------------


def synthetic(h: int, w: int, value: int) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (value, 255 - value, (value * 3) % 256)
    image[h // 4 : h // 2, w // 4 : w // 2] = 250
    return image


def write_video(path: Path, count: int, size: tuple[int, int] = (64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(count):
        writer.write(synthetic(size[1], size[0], 30 + i * 25))
    writer.release()


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "lane.avi"
    write_video(path, 5)
    return path


def test_opencv_source_reads_a_video_file(video: Path) -> None:
    source = OpenCVSource(str(video), (64, 48))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
        assert len(frames) <= 5
    source.close()
    assert len(frames) == 5
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[1])
    assert not np.shares_memory(frames[0], frames[1])


def test_opencv_source_missing_device_raises_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="cannot open camera"):
        OpenCVSource(str(tmp_path / "no-such-video.avi"))


def test_camera_spec_opencv_file_reopens_at_its_end(video: Path) -> None:
    source = live_camera(*parse_camera_spec(f"opencv:{video}"), size=(64, 48))
    assert isinstance(source, ReconnectingSource)
    try:
        frames = [source.read() for _ in range(5)]
        assert all(f is not None and f.shape == (48, 64, 3) for f in frames)
        assert source.state is STREAMING
        assert source.read() is None  # end of file: treated as a drop-out
        assert source.state is RECONNECTING
        again = source.read()  # reopened after backoff_initial
        assert again is not None
        np.testing.assert_array_equal(again, frames[0])
        assert source.reconnects == 1
        assert source.state is STREAMING
    finally:
        source.close()


def test_opencv_camera_gone_and_back(video: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    source = ReconnectingSource(
        lambda: OpenCVSource(str(video), (64, 48)),
        backoff_initial=0.1,
        backoff_max=5.0,
        clock=clock,
        sleep=clock.sleep,
    )
    states: list[CameraState] = []
    source.on_state(states.append)
    first = [source.read() for _ in range(5)]
    assert all(f is not None for f in first)
    away = tmp_path / "unplugged.avi"
    video.rename(away)  # the device disappears
    assert source.read() is None  # stream stops
    assert source.read() is None  # reopen fails: nothing at that path
    assert source.read() is None
    assert "cannot open camera" in (source.last_error or "")
    assert source.state is RECONNECTING
    away.rename(video)  # and comes back
    frame = source.read()
    assert frame is not None
    np.testing.assert_array_equal(frame, first[0])
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert states == [STREAMING, RECONNECTING, STREAMING]
    assert source.reconnects == 1
    source.close()


# -- parse_camera_spec ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "usb:0",
        "opencv",
        "opencv:",
        "replay:",
        "replay",
        "picamera2:0",
        "rtsp://cam.local/stream",
        "OpenCV:0",
        "webcam",
    ],
)
def test_camera_spec_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(CameraError, match="expected 'replay:<path>'"):
        parse_camera_spec(spec)


def test_camera_spec_error_does_not_leak_stream_credentials() -> None:
    with pytest.raises(CameraError) as info:
        parse_camera_spec("ip:rtsp://admin:hunter2@10.0.0.9/live")
    assert "hunter2" not in str(info.value)


def test_camera_spec_replay_folder(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), synthetic(40, 30, 90))
    source = open_source(CameraSpec("replay", tmp_path, 160, 120))
    assert isinstance(source, ReplaySource)
    frame = source.read()
    assert frame is not None and frame.shape == (120, 160, 3)
    assert source.read() is None
    source.close()


def test_camera_spec_replay_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CameraError):
        open_source(CameraSpec("replay", tmp_path / "nothing"))


@pytest.mark.parametrize(
    ("target", "device"), [("0", 0), ("12", 12), ("/dev/video2", "/dev/video2")]
)
def test_camera_spec_opencv_is_lazy_and_parses_the_device(
    monkeypatch: pytest.MonkeyPatch, target: str, device: int | str
) -> None:
    opened: list[tuple[object, object]] = []

    class Recorder:
        def __init__(self, dev: int | str, size: tuple[int, int]) -> None:
            opened.append((dev, size))

        def read(self) -> np.ndarray:
            return np.ones((2, 2, 3), np.uint8)

        def close(self) -> None:
            pass

    monkeypatch.setattr(camera, "OpenCVSource", Recorder)
    source = live_camera(*parse_camera_spec(f"opencv:{target}"), size=(320, 240))
    assert opened == []  # nothing opened until the first read
    assert source.read() is not None
    assert opened == [(device, (320, 240))]
    assert type(opened[0][0]) is type(device)
    source.close()


def test_camera_spec_picamera2_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails
    monkeypatch.setattr(camera.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CameraError, match="picamera2 is not available"):
        live_camera(*parse_camera_spec("picamera2"), size=(1280, 720))
    with pytest.raises(CameraError, match="picamera2 is not available"):
        Picamera2Source()


def test_picamera2_through_live_camera_survives_a_timeout(picamera2) -> None:
    source = live_camera("picamera2", None, (32, 24))
    assert isinstance(source, ReconnectingSource)
    source._sleep = lambda seconds: None  # no real backoff wait in the test
    first = source.read()
    assert first is not None and first.shape == (24, 32, 3)
    picamera2.fail_next_capture = 1
    assert source.read() is None
    assert source.state is RECONNECTING
    assert "timed out" in (source.last_error or "")
    assert picamera2.instances[0].closed
    assert source.read() is not None
    assert source.reconnects == 1
    assert len(picamera2.instances) == 2
    source.close()
    assert picamera2.instances[1].closed


def test_the_pi_camera_gives_frames_in_opencvs_channel_order(picamera2) -> None:
    """The traveller's red is OpenCV's channel 2: with "BGR888" red and blue swap, and the
    skin rule and the matcher see a blue face."""
    picamera2.seen_rgb = (200, 120, 30)
    source = Picamera2Source((8, 6))
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None and frame[0, 0].tolist() == [30, 120, 200]


# -- frames that are not 8-bit BGR ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (np.full((6, 8), 90, np.uint8), [90, 90, 90]),  # a near-infrared (grey) camera
        (np.full((6, 8, 1), 90, np.uint8), [90, 90, 90]),
        (np.full((6, 8, 4), (30, 120, 200, 255), np.uint8), [30, 120, 200]),  # BGRX
    ],
    ids=["grey", "grey-1-channel", "bgrx"],
)
def test_grey_and_four_channel_frames_become_bgr_and_the_original_is_wiped(
    given: np.ndarray, expected: list[int]
) -> None:
    frame = bgr_frame(given)
    assert frame.shape == (6, 8, 3) and frame.dtype == np.uint8
    assert frame[3, 4].tolist() == expected
    assert not given.any()


def test_a_bgr_frame_is_passed_as_it_is() -> None:
    given = np.full((6, 8, 3), 77, np.uint8)
    assert bgr_frame(given) is given and given.all()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (np.full((6, 8, 3), 0.5, np.float32), "float32 frames"),
        (np.full((6, 8, 3), 4000, np.uint16), "uint16 frames"),
        (np.full((6, 8, 2), 9, np.uint8), r"shape \(6, 8, 2\)"),
        (np.full((0, 8, 3), 9, np.uint8), r"shape \(0, 8, 3\)"),
        (np.full((2, 6, 8, 3), 9, np.uint8), r"shape \(2, 6, 8, 3\)"),
    ],
    ids=["float", "16-bit", "two-channel", "empty", "4-d"],
)
def test_a_frame_the_vision_stage_cannot_take_is_refused_by_name_and_wiped(
    given: np.ndarray, message: str
) -> None:
    with pytest.raises(CameraError, match=message):
        bgr_frame(given)
    assert not given.any()


def test_a_camera_giving_unusable_frames_is_a_camera_fault_not_a_blind_gate() -> None:
    """Without the check the detector finds no face in such frames and says nothing: the
    gate shows "step closer" to everyone. Here the source drops it and says why."""
    clock = FakeClock()
    opened: list[object] = []

    class FloatCamera:
        def read(self) -> np.ndarray:
            return np.full((4, 4, 3), 0.5, np.float32)

        def close(self) -> None:
            opened.append("closed")

    source = ReconnectingSource(FloatCamera, clock=clock, sleep=clock.sleep)
    assert source.read() is None
    assert source.state is not STREAMING
    assert "float32 frames" in (source.last_error or "")
    assert opened == ["closed"]


# -- ReplaySource pacing ---------------------------------------------------------------------


@pytest.fixture
def stills(tmp_path: Path) -> Path:
    folder = tmp_path / "stills"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), synthetic(20, 20, 60 * (i + 1)))
    return folder


def test_replay_realtime_fps_paces_frames(stills: Path) -> None:
    source = ReplaySource(stills, repeat=3, realtime_fps=10)
    clock = FakeClock()
    source._clock, source._sleep = clock, clock.sleep
    for _ in range(4):
        assert source.read() is not None
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])  # the first frame comes at once
    clock.advance(0.5)  # a slow consumer: the next frame is late already
    assert source.read() is not None
    assert len(clock.sleeps) == 3  # no sleep, and no burst to catch up afterwards:
    assert source.read() is not None
    assert clock.sleeps[-1] == pytest.approx(0.1)
    clock.advance(0.04)
    assert source.read() is not None
    assert clock.sleeps[-1] == pytest.approx(0.06)
    source.close()


def test_replay_without_pacing_never_sleeps(stills: Path) -> None:
    source = ReplaySource(stills, repeat=2)
    source._sleep = no_sleep
    assert len(drain(source)) == 6


def test_replay_rejects_bad_fps(stills: Path) -> None:
    with pytest.raises(ValueError):
        ReplaySource(stills, realtime_fps=0)


# -- FramePump --------------------------------------------------------------------------------


class GatedSource:
    """A live source that produces numbered frames only when the test allows it."""

    live = True

    def __init__(self) -> None:
        self.permits = threading.Semaphore(0)
        self.produced: list[np.ndarray] = []
        self.closed = threading.Event()

    def allow(self, count: int) -> None:
        self.permits.release(count)

    def read(self) -> np.ndarray | None:
        if not self.permits.acquire(timeout=0.01):
            return None  # no frame right now
        frame = np.full((6, 8), len(self.produced) + 1, np.int64)
        self.produced.append(frame)
        return frame

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def gated() -> GatedSource:
    return GatedSource()


def test_pump_latest_wins_and_dropped_frames_are_zeroized(gated: GatedSource) -> None:
    pump = FramePump(gated, name="test")
    try:
        gated.allow(5)
        wait_until(lambda: pump.frames_read == 5)
        newest = pump.get(timeout=5)
        assert newest is not None and (newest == 5).all()
        assert pump.dropped == 4
        assert all(not old.any() for old in gated.produced[:4])

        gated.allow(3)
        wait_until(lambda: pump.frames_read == 8)
        second = pump.get(timeout=5)
        assert second is not None and (second == 8).all()
        assert pump.dropped == 6
        assert all(not old.any() for old in gated.produced[5:7])
        assert (newest == 5).all()  # handed-out frames are the caller's, never touched

        assert pump.get(timeout=0.01) is None  # nothing new yet
        gated.allow(1)
        assert (pump.get(timeout=5) == 9).all()  # a waiting get wakes for the next frame
        assert pump.dropped == 6
        assert not pump.ended
    finally:
        pump.close()
    assert gated.closed.is_set()
    assert not pump.running


def test_pump_slow_consumer_always_gets_the_newest(gated: GatedSource) -> None:
    pump = FramePump(gated)
    taken: list[np.ndarray] = []
    try:
        for burst in [1, 4, 2, 7, 3, 1, 5]:
            target = pump.frames_read + burst
            gated.allow(burst)
            wait_until(lambda t=target: pump.frames_read == t)
            frame = pump.get(timeout=5)
            assert frame is not None and (frame == target).all()
            taken.append(frame)
    finally:
        pump.close()
    taken_ids = {id(f) for f in taken}
    dropped = [f for f in gated.produced if id(f) not in taken_ids]
    assert pump.dropped == len(dropped) == len(gated.produced) - len(taken)
    assert all(not f.any() for f in dropped)
    assert all(f.any() for f in taken)


def test_pump_free_running_source() -> None:
    class Fast:
        live = True

        def __init__(self, limit: int) -> None:
            self.limit, self.produced = limit, []

        def read(self) -> np.ndarray | None:
            if len(self.produced) >= self.limit:
                return None
            frame = np.full((2, 2), len(self.produced) + 1, np.int64)
            self.produced.append(frame)
            return frame

        def close(self) -> None:
            pass

    source = Fast(3000)
    pump = FramePump(source)
    values = []
    try:
        while True:
            frame = pump.get(timeout=5)
            assert frame is not None
            values.append(int(frame[0, 0]))
            if values[-1] == source.limit:
                break
    finally:
        pump.close()
    assert values == sorted(set(values))  # never an older frame after a newer one
    assert pump.frames_read == 3000
    assert pump.dropped == 3000 - len(values)
    kept = set(values)
    assert all(not f.any() for i, f in enumerate(source.produced, 1) if i not in kept)


def test_pump_close_zeroizes_the_slot(gated: GatedSource) -> None:
    pump = FramePump(gated)
    gated.allow(2)
    wait_until(lambda: pump.frames_read == 2)
    waiting = gated.produced[1]
    assert waiting.any()
    pump.close()
    assert not waiting.any()
    assert not gated.produced[0].any()
    assert pump.dropped == 1
    assert gated.closed.is_set()
    assert not pump.running
    assert pump.get(timeout=5) is None  # returns at once once closed
    pump.close()  # idempotent


def test_pump_sets_ended_when_a_replay_finishes(stills: Path) -> None:
    replay = ReplaySource(stills, repeat=2)
    pump = FramePump(replay)
    wait_until(lambda: pump.ended)
    wait_until(lambda: not pump.running)
    assert pump.frames_read == 6
    assert pump.dropped == 5
    last = pump.read()  # FrameSource interface
    assert last is not None
    np.testing.assert_array_equal(last, synthetic(20, 20, 180))
    assert pump.read() is None  # ended and empty: at once
    assert replay._current is None  # the pump closed (and zeroized) the replay
    pump.close()


def test_pump_as_frame_source_until_the_replay_ends(stills: Path) -> None:
    replay = ReplaySource(stills, repeat=1)
    replay_frames: list[np.ndarray] = []
    original = replay.read

    def counting_read() -> np.ndarray | None:
        frame = original()
        if frame is not None:
            replay_frames.append(frame)
        return frame

    replay.read = counting_read  # type: ignore[method-assign]
    with FramePump(replay, read_timeout=5) as pump:
        frames = drain(pump)
        assert pump.ended
    assert 1 <= len(frames) <= 3
    np.testing.assert_array_equal(frames[-1], synthetic(20, 20, 180))
    assert len(replay_frames) == 3


def test_pump_source_error_ends_it() -> None:
    class Broken:
        def read(self) -> np.ndarray | None:
            raise CameraError("cannot read image x.png")

        def close(self) -> None:
            self.closed = True

    source = Broken()
    pump = FramePump(source)
    wait_until(lambda: pump.ended)
    assert "cannot read image" in (pump.last_error or "")
    assert pump.get(timeout=5) is None
    pump.close()
    assert source.closed


def test_pump_keeps_running_through_a_camera_drop_out() -> None:
    world = FlakyWorld()
    source = ReconnectingSource(world.open, backoff_initial=0.001, backoff_max=0.002)
    pump = FramePump(source)
    try:
        assert pump.get(timeout=5) is not None
        world.broken = True
        wait_until(lambda: source.state is RECONNECTING)
        before = pump.frames_read
        world.broken = False
        wait_until(lambda: pump.frames_read > before + 2)
        assert pump.get(timeout=5) is not None
        assert not pump.ended
        assert source.reconnects >= 1
    finally:
        pump.close()
    assert source.state is CameraState.CLOSED
    assert all(s.closed for s in world.sessions)


def test_pump_close_interrupts_a_long_reconnect_wait() -> None:
    world = FlakyWorld(fail_opens=10**6)
    source = ReconnectingSource(world.open, backoff_initial=60.0, backoff_max=60.0)
    pump = FramePump(source)
    wait_until(lambda: in_backoff_wait(source))
    pump.close()
    assert not pump.running  # joined well before the 60 s backoff
    assert source.state is CameraState.CLOSED

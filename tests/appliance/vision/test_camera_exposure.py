"""The camera's exposure compensation: the Pi camera's libcamera ``ExposureValue``, given
by the reading thread of the reconnecting source (and again to every camera opened after
a drop-out), and passed on by the frame pump. ``picamera2`` is a fake module here (it
cannot run without a Pi); threads are awaited by polling, never by timing them."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from appliance.errors import CameraError
from appliance.vision.camera import (
    MAX_EXPOSURE_COMPENSATION,
    CameraState,
    Picamera2Source,
    ReconnectingSource,
    live_camera,
)
from appliance.vision.frame_pump import FramePump

SIZE = (32, 24)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


# -- Picamera2Source ---------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "given"), [(1.0, 1.0), (1, 1.0), (-0.5, -0.5), (0.0, 0.0)])
def test_the_pi_camera_gets_libcameras_exposure_value(picamera2, asked, given) -> None:
    source = Picamera2Source(SIZE)
    try:
        source.set_exposure_compensation(asked)
        (camera,) = picamera2.instances
        assert camera.controls == [{"ExposureValue": given}]
        assert type(camera.controls[0]["ExposureValue"]) is float
    finally:
        source.close()


def test_a_pi_camera_that_refuses_the_control_raises_camera_error(picamera2) -> None:
    source = Picamera2Source(SIZE)
    picamera2.refuse_controls = 1
    try:
        with pytest.raises(CameraError, match=r"refused exposure compensation.*not advertised"):
            source.set_exposure_compensation(1.0)
        assert source.read() is not None  # the camera itself still works
    finally:
        source.close()


# -- through live_camera: the reconnecting source -----------------------------------------


@pytest.fixture
def reader() -> Iterator[ThreadPoolExecutor]:
    """The one thread that reads the camera (as the frame pump's thread does)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reader") as pool:
        yield pool


@pytest.fixture
def live(picamera2) -> Iterator[ReconnectingSource]:
    source = live_camera("picamera2", None, SIZE)
    assert isinstance(source, ReconnectingSource)
    source._sleep = lambda seconds: None  # no real backoff wait in the test
    yield source
    source.close()


def read_on(reader: ThreadPoolExecutor, source: ReconnectingSource) -> np.ndarray | None:
    return reader.submit(source.read).result(timeout=10)


def reader_id(reader: ThreadPoolExecutor) -> int:
    return reader.submit(threading.get_ident).result(timeout=10)


def test_a_request_is_given_by_the_reading_thread_before_its_next_read(
    picamera2, live, reader
) -> None:
    assert read_on(reader, live) is not None
    (camera,) = picamera2.instances
    live.set_exposure_compensation(1.0)  # from another thread (the capture's observer)
    assert camera.controls == []  # not on the caller's thread
    assert read_on(reader, live) is not None
    assert [e[0] for e in camera.events] == ["capture", "controls", "capture"]
    assert camera.events[1][1:3] == ({"ExposureValue": 1.0}, reader_id(reader))
    assert reader_id(reader) != threading.get_ident()
    for _ in range(3):
        assert read_on(reader, live) is not None
    assert len(camera.controls) == 1  # given once, not before every frame


def test_a_request_before_the_camera_opens_reaches_it_before_its_first_frame(
    picamera2, live, reader
) -> None:
    live.set_exposure_compensation(1.0)
    assert picamera2.instances == []  # opened on the first read, not by the request
    assert read_on(reader, live) is not None
    (camera,) = picamera2.instances
    assert [e[0] for e in camera.events] == ["controls", "capture"]
    assert camera.controls == [{"ExposureValue": 1.0}]


def test_every_new_request_is_given_and_the_last_one_wins(picamera2, live, reader) -> None:
    assert read_on(reader, live) is not None
    (camera,) = picamera2.instances
    live.set_exposure_compensation(1.0)
    live.set_exposure_compensation(2.0)  # two requests between reads: only the newest
    assert read_on(reader, live) is not None
    live.set_exposure_compensation(0.0)  # back to the camera's own metering
    assert read_on(reader, live) is not None
    assert camera.controls == [{"ExposureValue": 2.0}, {"ExposureValue": 0.0}]


def test_a_camera_opened_after_a_drop_out_gets_the_same_exposure(picamera2, live, reader) -> None:
    assert read_on(reader, live) is not None
    live.set_exposure_compensation(1.0)
    assert read_on(reader, live) is not None
    picamera2.fail_next_capture = 1  # the camera times out
    assert read_on(reader, live) is None
    assert live.state is CameraState.RECONNECTING
    (first,) = picamera2.instances
    assert first.closed
    frame = read_on(reader, live)
    assert frame is not None and live.reconnects == 1
    old, new = picamera2.instances
    assert old is first and new is not first
    assert [e[0] for e in new.events] == ["controls", "capture"]  # before its first frame
    assert new.controls == [{"ExposureValue": 1.0}]
    assert new.events[0][2] == reader_id(reader)


def test_a_camera_reopened_at_its_own_metering_is_not_told_anything(
    picamera2, live, reader
) -> None:
    assert read_on(reader, live) is not None
    live.set_exposure_compensation(1.0)
    assert read_on(reader, live) is not None
    live.set_exposure_compensation(0.0)
    assert read_on(reader, live) is not None
    picamera2.fail_next_capture = 1
    assert read_on(reader, live) is None
    assert read_on(reader, live) is not None
    assert picamera2.instances[1].controls == []  # a camera opens on its own metering


def test_a_refusal_is_logged_and_frames_keep_coming(
    picamera2, live, reader, caplog: pytest.LogCaptureFixture
) -> None:
    assert read_on(reader, live) is not None
    (camera,) = picamera2.instances
    picamera2.refuse_controls = 1
    live.set_exposure_compensation(1.0)
    with caplog.at_level(logging.WARNING, logger="gate.camera"):
        frames = [read_on(reader, live) for _ in range(4)]
    assert all(frame is not None for frame in frames)
    assert live.state is CameraState.STREAMING and live.reconnects == 0
    assert len(picamera2.instances) == 1 and not camera.closed  # no drop-out for it
    refusals = [r for r in caplog.records if "refused exposure compensation" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert "+1.0 EV" in refusals[0].getMessage()
    assert camera.controls == []  # not retried before every frame ...
    live.set_exposure_compensation(0.5)
    assert read_on(reader, live) is not None
    assert camera.controls == [{"ExposureValue": 0.5}]  # ... but at the next request


@pytest.mark.parametrize("ev", [math.nan, math.inf, -math.inf, 9.0, -9.0, 8.01])
def test_an_impossible_request_is_a_value_error_and_changes_nothing(
    picamera2, live, reader, ev: float
) -> None:
    assert read_on(reader, live) is not None
    live.set_exposure_compensation(1.0)
    with pytest.raises(ValueError, match="exposure compensation must be within"):
        live.set_exposure_compensation(ev)
    assert read_on(reader, live) is not None
    assert picamera2.instances[0].controls == [{"ExposureValue": 1.0}]


@pytest.mark.parametrize("ev", [MAX_EXPOSURE_COMPENSATION, -MAX_EXPOSURE_COMPENSATION])
def test_libcameras_whole_range_is_accepted(picamera2, live, reader, ev: float) -> None:
    live.set_exposure_compensation(ev)
    assert read_on(reader, live) is not None
    assert picamera2.instances[0].controls == [{"ExposureValue": ev}]


def test_a_camera_without_exposure_control_ignores_it() -> None:
    class Plain:  # an OpenCV device, say
        def read(self) -> np.ndarray:
            return np.ones((2, 2, 3), np.uint8)

        def close(self) -> None:
            pass

    source = ReconnectingSource(Plain)
    try:
        source.set_exposure_compensation(1.0)
        assert source.read() is not None
        assert source.state is CameraState.STREAMING
    finally:
        source.close()


# -- the frame pump --------------------------------------------------------------------------


def test_the_pump_passes_a_request_to_the_camera_while_it_runs(picamera2) -> None:
    source = live_camera("picamera2", None, SIZE)
    pump = FramePump(source, name="camera")
    try:
        assert pump.get(timeout=10) is not None
        wait_until(lambda: len(picamera2.instances) == 1)
        (camera,) = picamera2.instances
        pump.set_exposure_compensation(1.0)
        wait_until(lambda: camera.controls == [{"ExposureValue": 1.0}])
        given_on = next(e[3] for e in camera.events if e[0] == "controls")
        assert given_on == "frame-pump-camera"  # the pump's thread, not ours
        taken = pump.frames_read
        wait_until(lambda: pump.frames_read > taken + 2)  # frames keep coming
        assert pump.get(timeout=10) is not None
        with pytest.raises(ValueError):
            pump.set_exposure_compensation(math.nan)
        assert camera.controls == [{"ExposureValue": 1.0}]
    finally:
        pump.close()
    assert camera.closed


def test_the_pump_over_a_source_without_exposure_control_ignores_it() -> None:
    class Still:
        live = True

        def read(self) -> np.ndarray:
            return np.ones((2, 2, 3), np.uint8)

        def close(self) -> None:
            pass

    pump = FramePump(Still())
    try:
        pump.set_exposure_compensation(1.0)
        assert pump.get(timeout=10) is not None
    finally:
        pump.close()

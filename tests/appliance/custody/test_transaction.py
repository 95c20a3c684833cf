"""Unit and property tests for appliance.custody.transaction (buffer ownership and purge)."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.custody.transaction import CaptureTransaction, PurgeRecord, zeroize


def filled_frame(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(1, 256, size=(h, w, 3), dtype=np.uint8)


def test_new_transaction_has_fresh_uuid_and_is_not_purged() -> None:
    first, second = CaptureTransaction("dev"), CaptureTransaction("dev")
    assert uuid.UUID(first.capture_id).version == 4
    assert first.capture_id != second.capture_id
    assert not first.purged
    assert first.record is None


def test_track_returns_the_same_buffer() -> None:
    tx = CaptureTransaction("dev")
    frame = filled_frame()
    assert tx.track(frame) is frame


def test_purge_zeroizes_every_tracked_buffer_and_counts_bytes() -> None:
    tx = CaptureTransaction("gate-b42-01")
    frame = tx.track(filled_frame())
    crop = tx.track(filled_frame(16, 16).astype(np.float32))
    encoded = tx.track(bytearray(b"\xff\xd8\xff" + bytes(range(1, 200))))
    sealed = tx.track(bytearray(b"\x01" * 333))
    tx.note_sealed(sealed)
    expected_sha = hashlib.sha256(sealed).hexdigest()
    expected_bytes = frame.nbytes + crop.nbytes + len(encoded) + len(sealed)

    record = tx.purge("granted", "verdict")

    assert not frame.any()
    assert not crop.any()
    assert encoded == bytearray(len(encoded))
    assert sealed == bytearray(333)
    assert isinstance(record, PurgeRecord)
    assert record.buffers_zeroized == 4
    assert record.bytes_zeroized == expected_bytes
    assert record.outcome == "granted"
    assert record.reason == "verdict"
    assert record.capture_id == tx.capture_id
    assert record.device_id == "gate-b42-01"
    assert record.sealed_sha256 == expected_sha
    assert record.purged_at_ms > 0
    assert tx.purged


def test_purge_zeroizes_through_views_and_drops_references() -> None:
    tx = CaptureTransaction("dev")
    frame = filled_frame()
    region = frame[10:30, 20:40]  # a view, as detectors.base.face_region hands out
    tx.track(region)
    tx.purge("referred", "verdict")
    assert not region.any()
    assert not frame[10:30, 20:40].any()
    assert frame[0:10].all()  # only the tracked view is cleared
    assert tx._buffers == []


def test_purge_is_idempotent() -> None:
    tx = CaptureTransaction("dev")
    tx.captured_at_ms, tx.sent_at_ms, tx.verdict_at_ms = 10, 20, 30
    buffer = tx.track(bytearray(b"abc"))
    first = tx.purge("granted", "verdict")
    buffer[:] = b"xyz"  # anything written later is no longer the transaction's
    second = tx.purge("error", "again")
    assert second is first
    assert second.outcome == "granted"
    assert buffer == bytearray(b"xyz")
    assert (first.captured_at_ms, first.sent_at_ms, first.verdict_at_ms) == (10, 20, 30)


def test_track_after_purge_raises() -> None:
    tx = CaptureTransaction("dev")
    tx.purge("referred", "no usable face")
    late = bytearray(b"late")
    with pytest.raises(RuntimeError, match="purged"):
        tx.track(late)
    assert tx.record is not None
    assert tx.record.buffers_zeroized == 0


def test_purge_without_buffers() -> None:
    record = CaptureTransaction("dev").purge("manual_check", "opt_out")
    assert (record.buffers_zeroized, record.bytes_zeroized) == (0, 0)
    assert record.sealed_sha256 == ""


def test_context_manager_purges_on_exception() -> None:
    frame = filled_frame()
    blob = bytearray(b"\x55" * 64)
    with pytest.raises(KeyError), CaptureTransaction("dev") as tx:
        tx.track(frame)
        tx.track(blob)
        raise KeyError("boom")
    assert tx.purged
    assert tx.record is not None
    assert tx.record.outcome == "error"
    assert "KeyError" in tx.record.reason
    assert not frame.any()
    assert blob == bytearray(64)
    assert tx.record.bytes_zeroized == frame.nbytes + 64


def test_context_manager_keeps_explicit_purge_record_on_later_exception() -> None:
    with pytest.raises(ValueError), CaptureTransaction("dev") as tx:
        tx.purge("granted", "verdict")
        raise ValueError
    assert tx.record is not None
    assert tx.record.outcome == "granted"


def test_context_manager_without_exception_still_allows_explicit_purge() -> None:
    frame = filled_frame()
    with CaptureTransaction("dev") as tx:
        tx.track(frame)
    tx.purge("granted", "verdict")
    assert not frame.any()


def test_record_to_dict_has_no_buffers() -> None:
    tx = CaptureTransaction("dev")
    tx.track(filled_frame())
    data = tx.purge("granted", "verdict").to_dict()
    assert set(data) == {
        "capture_id",
        "device_id",
        "sealed_sha256",
        "captured_at_ms",
        "sent_at_ms",
        "verdict_at_ms",
        "purged_at_ms",
        "outcome",
        "reason",
        "buffers_zeroized",
        "bytes_zeroized",
    }
    assert all(isinstance(v, (str, int)) for v in data.values())


dtypes = st.sampled_from([np.uint8, np.int16, np.float32, np.float64])
arrays = st.builds(
    lambda shape, dtype: np.full(shape, 7, dtype=dtype),
    st.lists(st.integers(0, 9), min_size=1, max_size=3).map(tuple),
    dtypes,
)
blobs = st.binary(max_size=300).map(bytearray)


@settings(max_examples=80, deadline=None)
@given(buffers=st.lists(st.one_of(arrays, blobs), max_size=8))
def test_purge_property(buffers: list) -> None:
    tx = CaptureTransaction("dev")
    for buffer in buffers:
        tx.track(buffer)
    expected = sum(b.nbytes if isinstance(b, np.ndarray) else len(b) for b in buffers)
    record = tx.purge("granted", "verdict")
    assert record.buffers_zeroized == len(buffers)
    assert record.bytes_zeroized == expected
    for buffer in buffers:
        if isinstance(buffer, np.ndarray):
            assert not buffer.any()
        else:
            assert not any(buffer)


def test_zeroize_returns_byte_counts() -> None:
    array = np.ones((3, 5), np.float64)
    assert zeroize(array) == 120
    assert not array.any()
    blob = bytearray(b"xyz")
    assert zeroize(blob) == 3
    assert blob == bytearray(3)


def test_context_manager_purges_on_normal_exit_too() -> None:
    frame = np.full((4, 4, 3), 9, np.uint8)
    with CaptureTransaction("dev") as tx:
        tx.track(frame)
    assert tx.purged and tx.record.outcome == "completed"
    assert not frame.any()


def test_track_refuses_buffers_that_cannot_be_zeroized() -> None:
    tx = CaptureTransaction("dev")
    with pytest.raises(TypeError, match="bytes cannot be zeroized"):
        tx.track(b"immutable copy")
    frozen = filled_frame()
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        tx.track(frozen)
    with pytest.raises(TypeError, match="memoryview"):
        tx.track(memoryview(b"read only"))
    assert tx._buffers == []


def test_memoryview_is_zeroized_in_place() -> None:
    backing = bytearray(b"\x42" * 100)
    tx = CaptureTransaction("dev")
    tx.track(memoryview(backing)[10:60])
    record = tx.purge("granted", "verdict")
    assert record.bytes_zeroized == 50
    assert backing[10:60] == bytearray(50) and backing[:10] == b"\x42" * 10


def test_same_buffer_tracked_twice_counts_once() -> None:
    tx = CaptureTransaction("dev")
    frame = filled_frame()
    tx.track(frame)
    tx.track(frame)
    assert tx.purge("granted", "verdict").buffers_zeroized == 1


def test_frame_in_hand_is_zeroized_even_if_never_tracked() -> None:
    tx = CaptureTransaction("dev")
    first, second = filled_frame(), filled_frame()
    tx.watch_frame(first)
    tx.watch_frame(second)  # the first is superseded (frame selection zeroizes it)
    record = tx.purge("referred", "shutdown")
    assert not second.any() and first.any()
    assert record.buffers_zeroized == 1


def test_frame_in_hand_that_is_also_tracked_counts_once() -> None:
    tx = CaptureTransaction("dev")
    frame = tx.watch_frame(filled_frame())
    tx.track(frame)
    assert tx.purge("granted", "verdict").buffers_zeroized == 1


def test_a_failing_buffer_does_not_stop_the_others() -> None:
    tx = CaptureTransaction("dev")
    good_before, good_after = bytearray(b"\x01" * 8), bytearray(b"\x02" * 8)
    backing = bytearray(b"\x03" * 8)
    tx.track(good_before)
    bad = tx.track(memoryview(backing))
    tx.track(good_after)
    bad.release()  # a released view cannot be written: its zeroize raises
    with pytest.raises(ValueError):
        tx.purge("granted", "verdict")
    assert good_before == bytearray(8) and good_after == bytearray(8)
    assert tx.record is not None and tx.record.buffers_zeroized == 3
    assert tx._buffers == []


def test_context_manager_records_a_shutdown() -> None:
    from appliance.shutdown import ShutdownRequested

    frame = filled_frame()
    with pytest.raises(ShutdownRequested), CaptureTransaction("dev") as tx:
        tx.track(frame)
        raise ShutdownRequested()
    assert (tx.record.outcome, tx.record.reason) == ("referred", "shutdown")
    assert not frame.any()

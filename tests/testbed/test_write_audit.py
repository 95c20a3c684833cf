"""Unit and property tests for testbed.write_audit (image-on-disk detection)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.write_audit import WriteAudit, contains_image_data


def synthetic_image(h: int = 96, w: int = 128) -> np.ndarray:
    """A gradient with noise: not a photo, but it encodes like one."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1) % 256
    return (base + rng.integers(0, 30, size=(h, w, 3))).astype(np.uint8)


def encoded(ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, synthetic_image())
    assert ok
    return buf.tobytes()


def ledger_like_lines(n: int) -> bytes:
    lines = [
        json.dumps(
            {
                "prev": f"{i:064x}",
                "capture_id": f"0b7d3c1e-2f4a-4c59-9a51-{i:012d}",
                "sealed_sha256": f"{i * 7919:064x}",
                "outcome": "granted",
                "bytes_zeroized": 2_764_800,
            },
            sort_keys=True,
        )
        for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[WriteAudit]:
    auditor = WriteAudit.instance()
    auditor.start(watch=[tmp_path])
    try:
        yield auditor
    finally:
        auditor.stop()


# --- contains_image_data ---------------------------------------------------------------


def test_jpeg_is_image_data() -> None:
    data = encoded(".jpg")
    assert data.startswith(b"\xff\xd8\xff")
    assert contains_image_data(data)


def test_png_is_image_data() -> None:
    data = encoded(".png")
    assert data.startswith(b"\x89PNG")
    assert contains_image_data(data)


def test_image_embedded_in_text_is_image_data() -> None:
    assert contains_image_data(b'{"log": "x"}\n' + encoded(".jpg") + b"\ntrailer")


def test_random_64k_is_image_data() -> None:
    assert contains_image_data(os.urandom(64 * 1024))


def test_json_text_is_not_image_data() -> None:
    text = json.dumps({"device": "gate-b42-01", "frames": list(range(5000))}).encode()
    assert len(text) > 16 * 1024
    assert not contains_image_data(text)


def test_ledger_like_lines_are_not_image_data() -> None:
    data = ledger_like_lines(400)
    assert len(data) > 64 * 1024
    assert not contains_image_data(data)


def test_empty_and_zero_data_is_not_image_data() -> None:
    assert not contains_image_data(b"")
    assert not contains_image_data(bytes(100_000))


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40_000))
def test_ascii_json_of_any_text_is_not_image_data(text: str) -> None:
    # ensure_ascii JSON can never hold a raw signature byte nor reach 7.5 bits/byte.
    assert not contains_image_data(json.dumps({"t": text}).encode())


@settings(max_examples=40, deadline=None)
@given(prefix=st.binary(max_size=64), suffix=st.binary(max_size=64), png=st.booleans())
def test_signature_anywhere_is_image_data(prefix: bytes, suffix: bytes, png: bool) -> None:
    signature = b"\x89PNG\r\n\x1a\n" if png else b"\xff\xd8\xff"
    assert contains_image_data(prefix + signature + suffix)


def test_long_misaligned_high_entropy_run_is_image_data() -> None:
    sealed_like = np.random.default_rng(11).integers(0, 256, 20 * 1024, dtype=np.uint8).tobytes()
    assert b"\xff\xd8\xff" not in sealed_like
    assert b"\x89PNG\r\n\x1a\n" not in sealed_like
    assert contains_image_data(sealed_like)  # alone, it is flagged
    data = b" " * (8 * 1024) + sealed_like + b" " * (8 * 1024)
    assert contains_image_data(data)


def test_base64_jpeg_is_image_data() -> None:
    jpeg = base64.b64encode(encoded(".jpg") * 8)
    assert contains_image_data(json.dumps({"frame": jpeg.decode()}).encode())


# --- WriteAudit ------------------------------------------------------------------------


def test_instance_is_a_singleton() -> None:
    assert WriteAudit.instance() is WriteAudit.instance()


def test_records_builtin_open_for_writing(audit: WriteAudit, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    with open(path, "w") as handle:
        handle.write("hello")
    assert str(path.resolve()) in audit.written or os.path.abspath(path) in audit.written


def test_records_os_open_with_create(audit: WriteAudit, tmp_path: Path) -> None:
    path = tmp_path / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"data")
    finally:
        os.close(fd)
    assert os.path.abspath(path) in audit.written


def test_does_not_record_reads(audit: WriteAudit, tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text("x")
    audit.start()  # forget the write above
    with open(path) as handle:
        handle.read()
    fd = os.open(path, os.O_RDONLY)
    os.close(fd)
    assert os.path.abspath(path) not in audit.written


def test_does_not_record_when_stopped(tmp_path: Path) -> None:
    auditor = WriteAudit.instance()
    auditor.start()
    auditor.stop()
    with open(tmp_path / "after-stop.txt", "w") as handle:
        handle.write("x")
    fd = os.open(tmp_path / "after-stop.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    assert auditor.written == set()


def test_start_clears_previous_records(audit: WriteAudit, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("1")
    assert audit.written
    audit.start()
    assert audit.written == set()


def test_image_files_finds_written_jpeg(audit: WriteAudit, tmp_path: Path) -> None:
    jpeg = tmp_path / "leak.jpg"
    with open(jpeg, "wb") as handle:
        handle.write(encoded(".jpg"))
    log = tmp_path / "log.jsonl"
    log.write_bytes(ledger_like_lines(10))
    missing = tmp_path / "gone.png"
    missing.write_bytes(encoded(".png"))
    missing.unlink()
    audit.stop()
    assert audit.image_files() == [os.path.abspath(jpeg)]


def test_image_files_empty_for_text_only(audit: WriteAudit, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"ok": True}))
    audit.stop()
    assert audit.image_files() == []


def test_image_written_by_cv2_imwrite_is_found(audit: WriteAudit, tmp_path: Path) -> None:
    path = tmp_path / "native.jpg"
    assert cv2.imwrite(str(path), synthetic_image())
    audit.stop()
    assert contains_image_data(path.read_bytes())
    assert audit.image_files() == [os.path.abspath(path)]

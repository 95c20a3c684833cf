"""A capture that declares more pixels than any gate camera makes is refused before it is
decoded (a decompression bomb), through the real service over mutual TLS."""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest

from appliance.matching.answers import Decision
from gate_contract.clock import now_ms
from gate_contract.sealing import seal_into, sealed_size
from matching_service.errors import UndecodableImage
from matching_service.image_size import MAX_SIDE_PX, check_decoded_size, declared_size


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def _declaring(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header claiming another size (nothing else changed)."""
    at = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[at + 5 : at + 7] = height.to_bytes(2, "big")
    patched[at + 7 : at + 9] = width.to_bytes(2, "big")
    return bytes(patched)


def test_sizes_are_read_from_real_headers():
    assert declared_size(_jpeg(1280, 720)) == (1280, 720)
    png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    assert declared_size(png) == (40, 30)
    progressive = cv2.imencode(
        ".jpg", np.zeros((20, 50, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1].tobytes()
    assert declared_size(progressive) == (50, 20)


@pytest.mark.parametrize(
    "data",
    [
        _declaring(_jpeg(), 65000, 65000),
        _declaring(_jpeg(), MAX_SIDE_PX + 1, 10),
        _declaring(_jpeg(), 4096, 4096),  # each side allowed, the area is not
        b"GIF89a" + bytes(100),
        b"\xff\xd8\xff\xda" + bytes(100),  # scan data before a frame header
        b"",
    ],
)
def test_oversized_or_headerless_images_are_refused(data):
    with pytest.raises(UndecodableImage):
        check_decoded_size(data)


def _verify(client, data: bytes) -> Decision:
    capture_id = str(uuid.uuid4())
    sealed = bytearray(sealed_size(len(data)))
    at = now_ms()
    seal_into(sealed, data, client.sealing_key, client.binding(capture_id, at))
    return client.verify(capture_id, at, sealed).decision


def test_a_decompression_bomb_is_never_decoded_over_grpc(client, monkeypatch):
    """The session's service decodes in this process: watch what reaches the decoder."""
    import matching_service.decision as decision

    decoded: list[int] = []
    real = decision.cv2.imdecode

    def watched(buffer, flags):
        decoded.append(len(buffer))
        return real(buffer, flags)

    monkeypatch.setattr(decision.cv2, "imdecode", watched)
    bomb = _declaring(_jpeg(), MAX_SIDE_PX + 1, 100)  # small enough to be safe if decoded
    assert _verify(client, bomb) is Decision.IMAGE_UNUSABLE
    assert decoded == []
    assert _verify(client, _jpeg()) is Decision.IMAGE_UNUSABLE  # no face, but decoded
    assert decoded == [len(_jpeg())]

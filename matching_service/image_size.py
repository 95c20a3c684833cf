"""The size a capture declares, read from its header before anything decodes it.

A sealed capture may be up to 8 MB, and a JPEG of that size can declare 65535 x 65535
pixels: decoding it would take about 12 GB of memory (a decompression bomb). The matcher
reads the width and height from the JPEG frame header (or the PNG ``IHDR``) and refuses
anything larger than a gate camera makes before ``cv2.imdecode`` sees it. Only JPEG (what
gates send) and PNG are accepted.
"""

from __future__ import annotations

from matching_service.errors import UndecodableImage

MAX_SIDE_PX = 4096
MAX_PIXELS = 4096 * 3072  # 12.6 Mpx: a 4K camera frame, with room to spare
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless...); not DHT, JPG, DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def declared_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) from the header; raises ``UndecodableImage`` if there is none."""
    view = memoryview(data)
    if bytes(view[:8]) == _PNG_SIGNATURE:
        if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
            raise UndecodableImage("capture is not a decodable image: a truncated PNG")
        return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    if bytes(view[:2]) != b"\xff\xd8":
        raise UndecodableImage("capture is not a decodable image: neither a JPEG nor a PNG")
    at = 2
    while at + 4 <= len(view):
        if view[at] != 0xFF:
            raise UndecodableImage("capture is not a decodable image: a damaged JPEG")
        marker = view[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        length = int.from_bytes(view[at + 2 : at + 4], "big")
        if marker in _SOF:
            if length < 7 or at + 9 > len(view):
                raise UndecodableImage(
                    "capture is not a decodable image: a short JPEG frame header"
                )
            height = int.from_bytes(view[at + 5 : at + 7], "big")
            width = int.from_bytes(view[at + 7 : at + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        at += 2 + length
    raise UndecodableImage("capture is not a decodable image: a JPEG without a frame header")


def check_decoded_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """The declared (width, height) if decoding it is safe; raises ``UndecodableImage``."""
    width, height = declared_size(data)
    if not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX):
        raise UndecodableImage(
            f"capture declares {width}x{height} pixels; at most {MAX_SIDE_PX} a side"
        )
    if width * height > MAX_PIXELS:
        raise UndecodableImage(f"capture declares {width}x{height} pixels; at most {MAX_PIXELS}")
    return width, height


__all__ = ["MAX_PIXELS", "MAX_SIDE_PX", "check_decoded_size", "declared_size"]

"""The match decision for one live capture against one flight's gallery.

Biometric-first: 1:N over the flight's gallery, ``MATCH`` within the gallery's threshold,
else ``NOT_ON_FLIGHT``. Pass-then-face: 1:1 against the traveller the boarding pass
names; the 1:N search only tells a stranger (``NOT_ON_FLIGHT``) from another passenger
holding someone else's pass (``NO_MATCH``). The live template is zeroized once compared.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from gate_contract.wire import pb
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import NoFaceFound, UndecodableImage
from matching_service.gallery import Gallery, Match
from matching_service.passes import passenger_from_bcbp
from matching_service.recognizer import FaceEncoder


class FlightMatcher:
    """Encodes a decrypted capture and decides against the gallery.

    Live captures are encoded by ``pool`` (worker processes, so concurrent gates encode
    in parallel) when one is given, else in this process by ``encoder`` (one capture at a
    time: dlib holds the GIL).
    """

    def __init__(
        self,
        gallery: Gallery,
        encoder: FaceEncoder | None,
        pool: EncoderPool | None,
        clock_ms: Callable[[], int],
    ) -> None:
        self.gallery = gallery
        self.encoder = encoder
        self.pool = pool
        self._clock = clock_ms

    def decide(
        self, flight: str, plain: bytearray, boarding_pass: str
    ) -> tuple[int, str, Match | None]:
        """(decision, traveller token, nearest gallery entry) for the JPEG ``plain``."""
        gallery = self.gallery
        if gallery.size(flight) == 0:
            return pb.GALLERY_NOT_READY, "", None
        try:
            template = self._encode(plain)
        except (NoFaceFound, UndecodableImage):
            return pb.IMAGE_UNUSABLE, "", None
        try:
            nearest = gallery.nearest(flight, template)
            holder = None
            if boarding_pass:
                passenger = passenger_from_bcbp(boarding_pass)
                holder = gallery.passenger_match(flight, template, passenger)
        finally:
            template.fill(0)  # the live template is not kept either
        threshold = gallery.threshold
        if boarding_pass:
            if holder is not None and holder.distance <= threshold:
                gallery.record_verification(flight, holder.traveller_id, self._clock())
                return pb.MATCH, holder.token, holder
            if nearest is not None and nearest.distance <= threshold:
                return pb.NO_MATCH, "", nearest
            return pb.NOT_ON_FLIGHT, "", nearest
        if nearest is None or nearest.distance > threshold:
            return pb.NOT_ON_FLIGHT, "", nearest
        gallery.record_verification(flight, nearest.traveller_id, self._clock())
        return pb.MATCH, nearest.token, nearest

    def _encode(self, plain: bytearray) -> np.ndarray:
        """The live capture's template; no decoded pixels outlive this call."""
        if self.pool is not None:
            # Decoded and zeroized in a worker; ``plain`` stays the caller's to zeroize.
            return self.pool.encode_jpeg(plain)
        if self.encoder is None:
            raise RuntimeError("a matcher needs an encoder or an encoder pool")
        image = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise UndecodableImage("capture is not a decodable image")
        try:
            return self.encoder.encode(image)
        finally:
            image.fill(0)


__all__ = ["FlightMatcher"]

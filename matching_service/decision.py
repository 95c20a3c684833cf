"""The match decision for one live capture against one flight's gallery.

Biometric-first: 1:N over the flight's gallery, ``MATCH`` within the 1:N threshold for a
gallery of that size (target FPIR), else ``NOT_ON_FLIGHT``. Pass-then-face: 1:1 against
the traveller the boarding pass names, at the 1:1 threshold (target FMR); the 1:N search,
at its own threshold, only tells a stranger (``NOT_ON_FLIGHT``) from another passenger
holding someone else's pass (``NO_MATCH``). Thresholds are the gallery's, for its
recognizer and the matched template's photo count. The live template is zeroized once
compared.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from gate_contract.wire import pb
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import (
    CallerGone,
    NoFaceFound,
    RecognizerUnavailable,
    TemplateMismatch,
    UndecodableImage,
)
from matching_service.gallery import Gallery, Match
from matching_service.image_size import check_decoded_size
from matching_service.passes import passenger_from_bcbp
from matching_service.recognizers import Recognizer


class FlightMatcher:
    """Encodes a decrypted capture and decides against the gallery.

    Live captures are encoded by ``pool`` (worker processes, so concurrent gates encode
    in parallel) when one is given, else in this process by ``encoder`` (one capture at a
    time: dlib holds the GIL). Both must be the gallery's recognizer, the gallery must
    hold no flight enrolled by another (``TemplateMismatch``: re-enrol or serve with that
    one), and its thresholds must be calibrated (``RecognizerUnavailable``).
    """

    def __init__(
        self,
        gallery: Gallery,
        encoder: Recognizer | None,
        pool: EncoderPool | None,
        clock_ms: Callable[[], int],
    ) -> None:
        template_id = gallery.recognizer.template_id
        for part in (encoder, pool):
            if part is not None and part.info.template_id != template_id:
                raise TemplateMismatch(
                    f"the gallery is for {template_id} but the encoder is {part.info.template_id}"
                )
        foreign = gallery.foreign_flights()
        if foreign:
            listed = ", ".join(f"{f} ({t})" for f, t in sorted(foreign.items())[:5])
            raise TemplateMismatch(
                f"{gallery.path} holds flights enrolled with another recognizer: {listed}. "
                f"Re-enrol them with `gate-matcher enroll --recognizer "
                f"{gallery.recognizer.name}`, or serve with the recognizer that made them"
            )
        if not gallery.thresholds.knows(template_id):
            raise RecognizerUnavailable(
                f"no calibrated thresholds for {template_id}: run `gate-matcher calibrate "
                f"--recognizer {gallery.recognizer.name} --dataset DIR --save`"
            )
        self.gallery = gallery
        self.encoder = encoder
        self.pool = pool
        self._clock = clock_ms

    def decide(
        self,
        flight: str,
        plain: bytearray,
        boarding_pass: str,
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[int, str, Match | None]:
        """(decision, traveller token, nearest gallery entry) for the JPEG ``plain``.

        ``still_wanted`` is asked once the capture is encoded (the slow part): a caller
        gone by then (an opt-out, its deadline) gets no decision (:class:`CallerGone`)
        and nothing is recorded of the traveller (no verification, no retention clock).
        """
        gallery = self.gallery
        if gallery.size(flight) == 0:
            return pb.GALLERY_NOT_READY, "", None
        try:
            template = self._encode(plain)
        except (NoFaceFound, UndecodableImage):
            return pb.IMAGE_UNUSABLE, "", None
        if not still_wanted():
            template.fill(0)
            raise CallerGone("the caller cancelled before the match")
        try:
            nearest = gallery.nearest(flight, template)
            holder = None
            if boarding_pass:
                passenger = passenger_from_bcbp(boarding_pass)
                holder = gallery.passenger_match(flight, template, passenger)
        finally:
            template.fill(0)  # the live template is not kept either
        identified = nearest is not None and nearest.distance <= gallery.threshold_1ton(
            nearest.photos, gallery.size(flight)
        )
        if boarding_pass:
            if holder is not None and holder.distance <= gallery.threshold_1to1(holder.photos):
                gallery.record_verification(flight, holder.traveller_id, self._clock())
                return pb.MATCH, holder.token, holder
            if identified:
                return pb.NO_MATCH, "", nearest
            return pb.NOT_ON_FLIGHT, "", nearest
        if not identified:
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
        check_decoded_size(plain)  # before the decoder allocates: no decompression bomb
        image = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise UndecodableImage("capture is not a decodable image")
        try:
            return self.encoder.encode(image)
        finally:
            image.fill(0)


__all__ = ["FlightMatcher"]

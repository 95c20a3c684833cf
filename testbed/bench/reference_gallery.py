"""The reference matching service on loopback, holding a gallery of document photos, to
ask "is this capture the right person?" 1:1 the way a pass-then-face gate asks it.

``<gallery>/<identity>/*.jpg``: each identity is enrolled with its first
``photos_per_traveller`` photos that the matcher can encode (one template of several
document photos, as the service's galleries hold them), leaving out the photos the
scenes were made from (``exclude``), with a name and booking reference so that a
boarding pass names them. A capture is sealed by
``appliance.custody.payload.seal_capture`` exactly as the gate seals it (crop, tone
curve, JPEG, encryption) and sent with that identity's pass over mutual TLS: the verdict
says whether the face is the pass holder's. ``verify_photo`` sends a still photo as it
is, for the matcher's own rate on the same people.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import cv2

from appliance.custody.payload import seal_capture
from appliance.custody.transaction import CaptureTransaction
from appliance.gate.flight import Flight
from appliance.matching.answers import Decision
from appliance.matching.client import MatchingClient
from appliance.vision.selection import Selection
from gate_contract.clock import now_ms
from gate_contract.progress import SILENT, Progress
from gate_contract.sealing import seal_into, sealed_size
from matching_service.dev_ca import DEV_DEVICE_ID, create_dev_pki
from matching_service.errors import NoFaceFound
from matching_service.gallery import Gallery, flight_key
from matching_service.recognizers import DEFAULT_RECOGNIZER, Recognizer, open_recognizer
from matching_service.server import service_from_pki, start_server
from testbed.testing import make_bcbp

BENCH_FLIGHT = Flight("ZZ", "0016", "2026-11-25", "LAX", "C16")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _pass_name(number: int) -> str:
    return f"TRAVELLER/NO{number:05d}"


class ReferenceGallery:
    """The matcher with ``gallery``'s identities enrolled; ``close()`` stops it."""

    def __init__(
        self,
        gallery: Path,
        exclude: Iterable[str] = (),
        recognizer: str = DEFAULT_RECOGNIZER,
        progress: Progress = SILENT,
        photos_per_traveller: int = 1,
    ) -> None:
        gallery = Path(gallery)
        if not gallery.is_dir():
            raise ValueError(f"gallery {gallery} is not a folder of <identity>/*.jpg")
        excluded = set(exclude)
        self._work = tempfile.TemporaryDirectory(prefix="gate-capture-bench-")
        work = Path(self._work.name)
        self.photos: dict[str, list[Path]] = {}
        for folder in sorted(p for p in gallery.iterdir() if p.is_dir()):
            if folder.name.startswith(("_", ".")):
                continue
            photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if photos:
                self.photos[folder.name] = photos
        encoder = open_recognizer(recognizer)
        manifest, self.passes = [], {}
        documents = progress.bar("document photos", total=len(self.photos), unit="identity")
        with documents:
            for number, (identity, photos) in enumerate(self.photos.items()):
                documents.update()
                candidates = [p for p in photos if p.name not in excluded]
                documents_found = self._documents(encoder, candidates, photos_per_traveller)
                if not documents_found:
                    continue
                pnr = f"G{number:05d}"
                manifest.append(
                    {
                        "traveller_id": identity,
                        "category": "in_scope",
                        "photos": [str(p.absolute()) for p in documents_found],
                        "pnr": pnr,
                        "name": _pass_name(number),
                    }
                )
                self.passes[identity] = make_bcbp(
                    _pass_name(number),
                    pnr,
                    origin=BENCH_FLIGHT.departure_airport,
                    carrier=BENCH_FLIGHT.carrier,
                    flight=BENCH_FLIGHT.flight_number,
                    julian_day=329,
                )
        if not manifest:
            self._work.cleanup()
            raise ValueError(f"no photo in {gallery} could be enrolled (no face found)")
        manifest_path = work / "gallery.json"
        manifest_path.write_text(json.dumps(manifest))
        store = Gallery(work / "gallery.sqlite", encoder.info)
        flight = flight_key(
            BENCH_FLIGHT.carrier,
            BENCH_FLIGHT.flight_number,
            BENCH_FLIGHT.date,
            BENCH_FLIGHT.departure_airport,
        )
        store.enroll_manifest(
            flight, manifest_path, encoder, photos_root=gallery.resolve(), progress=progress
        )
        pki = create_dev_pki(work / "pki")
        self._server, port = start_server(service_from_pki(pki, store, encoder), pki)
        self.client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=60)
        self.client.open_session(BENCH_FLIGHT)

    @staticmethod
    def _documents(encoder: Recognizer, photos: list[Path], wanted: int) -> list[Path]:
        """The first ``wanted`` photos the matcher finds a face in (the document photos)."""
        found: list[Path] = []
        for photo in photos:
            if len(found) == wanted:
                break
            image = cv2.imread(str(photo))
            if image is None:
                continue
            try:
                encoder.encode(image)
                found.append(photo)
            except NoFaceFound:
                continue
            finally:
                image.fill(0)
        return found

    def enrolled(self, identity: str | None) -> bool:
        return identity is not None and identity in self.passes

    def verify_capture(self, identity: str, selection: Selection) -> bool | None:
        """Is the selected frame ``identity``? Sealed as the gate seals it, then purged.
        None: ``identity`` is not in the gallery."""
        if not self.enrolled(identity):
            return None
        transaction = CaptureTransaction(self.client.device_id)
        transaction.captured_at_ms = now_ms()
        boarding_pass = self.passes[identity]
        try:
            transaction.track(selection.frame)
            sealed = seal_capture(
                transaction,
                selection.frame,
                selection.report.face,
                self.client.sealing_key,
                self.client.binding(
                    transaction.capture_id, transaction.captured_at_ms, boarding_pass
                ),
                gamma=selection.gamma,
            )
            verdict = self.client.verify(
                transaction.capture_id, transaction.captured_at_ms, sealed, boarding_pass
            )
        finally:
            transaction.purge("bench", "verified")
        return verdict.decision is Decision.MATCH

    def verify_photo(self, identity: str, photo: Path) -> bool:
        """Is the still ``photo`` (sent as it is) ``identity``? The matcher's own rate."""
        data = bytearray(photo.read_bytes())
        capture_id = str(uuid.uuid4())
        captured_at = now_ms()
        boarding_pass = self.passes[identity]
        sealed = bytearray(sealed_size(len(data)))
        try:
            binding = self.client.binding(capture_id, captured_at, boarding_pass)
            seal_into(sealed, data, self.client.sealing_key, binding)
            verdict = self.client.verify(capture_id, captured_at, sealed, boarding_pass)
        finally:
            data[:] = bytes(len(data))
            sealed[:] = bytes(len(sealed))
        return verdict.decision is Decision.MATCH

    def photo_of(self, identity: str, name: str | None) -> Path | None:
        return next((p for p in self.photos.get(identity, []) if p.name == name), None)

    def close(self) -> None:
        self.client.close()
        self._server.stop(grace=None)
        self._work.cleanup()


__all__ = ["BENCH_FLIGHT", "PHOTO_SUFFIXES", "ReferenceGallery"]

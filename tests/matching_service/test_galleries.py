"""Multi-photo galleries, one recognizer per gallery, and both recognizers over real gRPC."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate_contract.clock import now_ms
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb
from matching_service import cli
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import GalleryError, RecognizerUnavailable, TemplateMismatch
from matching_service.gallery import Gallery, flight_key, read_manifest
from matching_service.recognizers import RECOGNIZERS
from matching_service.server import service_from_pki, start_server
from matching_service.thresholds import OperatingPoints
from testbed.testing import FLIGHT
from tests.support import require_recognizer

FLIGHT_KEY = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    """A manifest in ``folder`` with its photos linked in beside it (photos must stay in
    the manifest's folder)."""

    def local(photo):
        if not isinstance(photo, str) or not Path(photo).is_absolute():
            return photo  # already relative (or a deliberately bad value)
        link = folder / Path(photo).name
        if not link.exists():
            link.symlink_to(photo)
        return link.name

    for row in rows:
        if isinstance(row.get("photos"), list):
            row["photos"] = [local(p) for p in row["photos"]]
        if "photo" in row:
            row["photo"] = local(row["photo"])
    path = folder / "gallery.json"
    path.write_text(json.dumps(rows))
    return path


def two_travellers(photos: Path, blank: Path | None = None) -> list[dict]:
    obama = [str(photos / "obama.jpg"), str(photos / "obama3.jpg")]
    if blank is not None:
        obama.append(str(blank))
    return [
        {"traveller_id": "PAX-OB", "category": "us_citizen", "photos": obama, "pnr": "ABC123"},
        {"traveller_id": "PAX-BI", "category": "in_scope", "photo": str(photos / "biden.jpg")},
    ]


def test_manifest_takes_a_list_of_photos_in_json_and_csv(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "m.json").write_text(
        json.dumps([{"traveller_id": "P1", "category": "in_scope", "photos": ["a.jpg", "b.jpg"]}])
    )
    (tmp_path / "m.csv").write_text("traveller_id,category,photos\nP1,in_scope,a.jpg; b.jpg\n")
    for name in ("m.json", "m.csv"):
        (entry,) = read_manifest(tmp_path / name)
        assert entry.photos == ((tmp_path / "a.jpg").resolve(), (tmp_path / "b.jpg").resolve())


@pytest.mark.parametrize(
    ("photos", "message"),
    [
        ([], "non-empty list"),
        ("", "missing field 'photos'"),
        ([1, 2], "non-empty list of paths"),
        (["a.jpg", "a.jpg"], "listed twice"),
        ([f"{n}.jpg" for n in range(17)], "more than 16"),
    ],
)
def test_bad_photo_lists_are_clear_errors(tmp_path, photos, message):
    manifest = write_manifest(
        tmp_path, [{"traveller_id": "P1", "category": "in_scope", "photos": photos}]
    )
    with pytest.raises(GalleryError, match=message):
        read_manifest(manifest)


def test_enrolment_fuses_every_usable_photo_and_reports_the_others(encoder, demo_photos, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    gallery = Gallery(tmp_path / "g.sqlite", encoder.info)
    report = gallery.enroll_manifest(
        FLIGHT_KEY, write_manifest(tmp_path, two_travellers(demo_photos, blank)), encoder
    )
    assert (report.travellers, report.photos, report.replaced) == (2, 3, 0)
    assert len(report.skipped) == 1 and "PAX-OB: blank.png" in report.skipped[0]
    singles = [
        encoder.encode(cv2.imread(str(demo_photos / n))) for n in ("obama.jpg", "obama3.jpg")
    ]
    live = encoder.encode(cv2.imread(str(demo_photos / "obama2.jpg")))
    nearest = gallery.nearest(FLIGHT_KEY, live)
    assert nearest.traveller_id == "PAX-OB" and nearest.photos == 2
    expected = encoder.info.distances(live, encoder.info.fuse(singles)[None])[0]
    assert nearest.distance == pytest.approx(expected, abs=1e-5)


def test_a_traveller_without_any_usable_photo_fails_the_enrolment(encoder, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    rows = [{"traveller_id": "P1", "category": "in_scope", "photos": [str(blank)]}]
    with pytest.raises(GalleryError, match="no usable face in any photo of P1"):
        Gallery(tmp_path / "g.sqlite", encoder.info).enroll_manifest(
            FLIGHT_KEY, write_manifest(tmp_path, rows), encoder
        )


def test_templates_of_another_recognizer_are_never_served_and_re_enrolment_replaces_them(
    pki, encoder, demo_photos, tmp_path
):
    mobilefacenet = require_recognizer("mobilefacenet")
    manifest = write_manifest(tmp_path, two_travellers(demo_photos))
    db = tmp_path / "g.sqlite"
    Gallery(db, encoder.info).enroll_manifest(FLIGHT_KEY, manifest, encoder)
    other = Gallery(db, mobilefacenet.info)
    assert other.size(FLIGHT_KEY) == 0  # the dlib templates are invisible to it
    with pytest.raises(TemplateMismatch, match="enroll --recognizer mobilefacenet"):
        service_from_pki(pki, other, mobilefacenet)
    with pytest.raises(TemplateMismatch, match="not dlib"):
        other.enroll_manifest(FLIGHT_KEY, manifest, encoder)
    report = other.enroll_manifest(FLIGHT_KEY, manifest, mobilefacenet)
    assert report.replaced == 2 and other.size(FLIGHT_KEY) == 2
    assert Gallery(db, encoder.info).size(FLIGHT_KEY) == 0
    service_from_pki(pki, other, mobilefacenet)  # now it serves


def test_an_encoder_of_another_recognizer_is_refused(pki, encoder, tmp_path):
    mobilefacenet = require_recognizer("mobilefacenet")
    with pytest.raises(TemplateMismatch, match="encoder is mobilefacenet"):
        service_from_pki(pki, Gallery(tmp_path / "g.sqlite", encoder.info), mobilefacenet)


def test_saved_calibration_replaces_the_default_and_a_missing_one_is_refused(
    pki, encoder, tmp_path
):
    gallery = Gallery(tmp_path / "g.sqlite", encoder.info)
    shipped = gallery.threshold_1to1(1)
    impostor = np.linspace(0.01, 0.05, 50_000)  # an operator's own data: far stricter
    gallery.save_calibration([OperatingPoints.fit(encoder.info.template_id, 1, impostor, "own")])
    for view in (gallery, Gallery(tmp_path / "g.sqlite", encoder.info)):
        assert view.threshold_1to1(1) == pytest.approx(0.01 + 0.04 * 0.001, abs=1e-5)
    assert gallery.threshold_1to1(1) < shipped
    gallery.thresholds = type(gallery.thresholds)([])  # a model nobody calibrated
    with pytest.raises(RecognizerUnavailable, match="gate-matcher calibrate --recognizer dlib"):
        service_from_pki(pki, gallery, encoder)


@pytest.fixture(scope="module", params=RECOGNIZERS)
def served(request, pki, demo_photos, tmp_path_factory):
    """The real service with ``recognizer``, in-process and through an encoder pool."""
    recognizer = require_recognizer(request.param)
    work = tmp_path_factory.mktemp(f"served-{request.param}")
    gallery = Gallery(work / "g.sqlite", recognizer.info)
    gallery.enroll_manifest(
        FLIGHT_KEY, write_manifest(work, two_travellers(demo_photos)), recognizer
    )
    pool = EncoderPool(1, recognizer=request.param)
    servers = []
    try:
        for encoder, workers in ((recognizer, None), (None, pool)):
            service = service_from_pki(pki, gallery, encoder, workers)
            servers.append((start_server(service, pki), gallery))
        yield servers
    finally:
        for (server, _), _ in servers:
            server.stop(grace=None)
        pool.close()


def test_both_recognizers_match_over_grpc(served, client_for, demo_photos):
    for (_, port), gallery in served:
        client = client_for(port)
        tokens = gallery.tokens(FLIGHT_KEY)
        for photo, decision, token in (
            ("obama2.jpg", pb.MATCH, tokens["PAX-OB"]),
            ("astronaut.png", pb.NOT_ON_FLIGHT, ""),
        ):
            data = cv2.imencode(".jpg", cv2.imread(str(demo_photos / photo)))[1].tobytes()
            capture_id = str(uuid.uuid4())
            sealed = bytearray(sealed_size(len(data)))
            at = now_ms()
            seal_into(sealed, data, client.sealing_key, client.binding(capture_id, at))
            verdict = client.verify(capture_id, at, sealed)
            assert (verdict.decision, verdict.traveller_token) == (decision, token), photo
        client.close()


@pytest.fixture
def client_for(matcher):
    def make(port: int):
        from appliance.matching.client import MatchingClient
        from matching_service.dev_ca import DEV_DEVICE_ID

        client = MatchingClient(f"localhost:{port}", matcher.pki, DEV_DEVICE_ID, deadline_s=20)
        client.open_session(FLIGHT)
        return client

    return make


def test_cli_enrols_with_a_recognizer_and_serve_refuses_a_gallery_of_another(
    demo_photos, tmp_path, capsys
):
    require_recognizer("mobilefacenet")
    manifest = write_manifest(tmp_path, two_travellers(demo_photos))
    db = str(tmp_path / "g.sqlite")
    flight = ["--flight", "BA", "0283", "2026-11-25", "LAX", "--manifest", str(manifest)]
    assert cli.main(["--db", db, "enroll", *flight]) == 0
    assert "2 travellers from 3 photos with dlib-resnet-128-unit/" in capsys.readouterr().out
    serve = ["--db", db, "serve", "--dev-pki", "--pki", str(tmp_path / "pki"), "--workers", "1"]
    assert cli.main([*serve, "--address", "127.0.0.1:0", "--recognizer", "mobilefacenet"]) == 2
    assert "enrolled with another recognizer" in capsys.readouterr().err
    assert cli.main(["--db", db, "enroll", *flight, "--recognizer", "mobilefacenet"]) == 0
    assert "replaced 2 templates" in capsys.readouterr().out


@pytest.mark.parametrize("photo", ["../outside.jpg", "/etc/passwd", "sub/../../outside.jpg"])
def test_a_manifest_cannot_name_a_file_outside_its_folder(tmp_path, photo):
    """The attack: a gallery CSV's photo path could name any file the service can read."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"")
    manifest = folder / "gallery.csv"
    manifest.write_text(f"traveller_id,category,photo\nPAX-1,us_citizen,{photo}\n")
    with pytest.raises(GalleryError, match="outside the photos folder"):
        read_manifest(manifest)
    read_manifest(manifest, photos_root=tmp_path if photo != "/etc/passwd" else Path("/"))

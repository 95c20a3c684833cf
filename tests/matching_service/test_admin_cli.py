"""`gate-matcher` administration as an operator runs it: bad values are refused, not
stored; a --db in a missing folder is an error; tokens are listed and revoked."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from appliance.errors import EnrollmentFailed
from appliance.matching.enrollment import enroll
from matching_service.enrollment import EnrollmentTokens
from tests.support import (
    GRPC_CORE_LINE,
    console_script,
    gate_matcher,
    without_grpc_logging,
    write_two_traveller_manifest,
)


def test_a_db_in_a_missing_folder_is_an_error(tmp_path):
    missing = tmp_path / "no-such-folder" / "gallery.sqlite"
    result = gate_matcher("--db", str(missing), "token", "list")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not missing.parent.exists()


def test_bad_device_ids_and_flights_are_refused_and_nothing_is_stored(tmp_path):
    db = tmp_path / "gallery.sqlite"
    for device in ("gate 1", "gate-1\n", "-gate", "x" * 65):
        result = gate_matcher(
            "--db", str(db), "issue-token", f"--device-id={device}", "--airport", "LAX"
        )
        assert result.returncode == 2 and "device id" in result.stderr, (device, result.stderr)
        assert "Traceback" not in result.stderr
    listed = gate_matcher("--db", str(db), "token", "list", "--json")
    assert json.loads(listed.stdout) == []

    manifest = tmp_path / "m.json"
    manifest.write_text("[]")
    for flight, named in (
        (("BA", "0283", "2026-02-30", "LAX"), "date"),
        (("BA", "0283", "25/11/2026", "LAX"), "date"),
        (("BA", "02834", "2026-11-25", "LAX"), "flight number"),
        (("BA", "0283", "2026-11-25", "LA"), "airport"),
    ):
        result = gate_matcher(
            "--db", str(db), "enroll", "--flight", *flight, "--manifest", str(manifest)
        )
        assert result.returncode == 2 and named in result.stderr, (flight, result.stderr)
        assert "nothing was enrolled" in result.stderr


def test_tokens_are_listed_and_a_revoked_one_no_longer_enrols(tmp_path, pki):
    from matching_service.enrollment import EnrollmentService, start_enrollment_server

    db = tmp_path / "gallery.sqlite"
    issued = gate_matcher(
        "--db", str(db), "issue-token", "--device-id", "gate-a1", "--airport", "lax"
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    listed = json.loads(gate_matcher("--db", str(db), "token", "list", "--json").stdout)
    assert [(t["device_id"], t["state"], t["airport"]) for t in listed] == [
        ("gate-a1", "open", "LAX")
    ]
    assert token not in json.dumps(listed)  # only a hash prefix identifies it

    revoked = gate_matcher("--db", str(db), "token", "revoke", "--device-id", "gate-a1")
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout
    assert "expired" in gate_matcher("--db", str(db), "token", "list").stdout

    server, port = start_enrollment_server(EnrollmentService(pki, EnrollmentTokens(db)), pki)
    try:
        try:
            enroll(f"localhost:{port}", pki.ca_cert.read_bytes(), token, "gate-a1", tmp_path / "p")
        except EnrollmentFailed as exc:
            assert "expired" in str(exc)
        else:
            raise AssertionError("a revoked token enrolled a device")
    finally:
        server.stop(grace=None)


def test_both_clis_say_their_version():
    matcher = gate_matcher("--version")
    gatectl = subprocess.run(
        [sys.executable, "-m", "appliance", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert matcher.returncode == 0 and matcher.stdout.startswith("gate-matcher ")
    assert gatectl.returncode == 0 and gatectl.stdout.startswith("gatectl ")
    assert matcher.stdout.split()[1] == gatectl.stdout.split()[1] != "unknown"


def test_a_revoked_certificate_is_refused_by_the_serving_matcher(tmp_path, pki, encoder):
    """`gate-matcher revoke --serial` on the list a serving matcher reads: that device
    certificate can no longer open a session (no restart)."""
    from cryptography import x509

    from appliance.errors import MatchingUnavailable
    from appliance.matching.client import MatchingClient
    from matching_service.gallery import Gallery
    from matching_service.revocation import RevocationList
    from matching_service.server import service_from_pki, start_server
    from testbed.testing import FLIGHT

    listing = tmp_path / "revoked.json"
    listing.write_text('{"serials": [], "devices": []}')
    service = service_from_pki(
        pki, Gallery(tmp_path / "g.sqlite"), encoder, revocations=RevocationList(listing)
    )
    server, port = start_server(service, pki)
    client = MatchingClient(f"localhost:{port}", pki, "gate-dev-0001", deadline_s=5)
    try:
        assert client.open_session(FLIGHT).session_id
        serial = x509.load_pem_x509_certificates(pki.device_cert.read_bytes())[0].serial_number
        result = gate_matcher("revoke", "--revocations", str(listing), "--serial", hex(serial))
        assert result.returncode == 0 and hex(serial) in result.stdout, result.stderr
        try:
            client.open_session(FLIGHT)
        except MatchingUnavailable as exc:
            assert "PERMISSION_DENIED" in str(exc) or "UNAUTHENTICATED" in str(exc), exc
        else:
            raise AssertionError("a revoked certificate still opens sessions")
    finally:
        client.close()
        server.stop(grace=None)


def test_gallery_list_show_and_delete(tmp_path, demo_photos):
    db = tmp_path / "gallery.sqlite"
    manifest = tmp_path / "m.json"
    write_two_traveller_manifest(manifest, demo_photos)
    flight = ("ba", "283", "2026-11-25", "lax")  # case and zero padding as typed
    enrolled = gate_matcher("--db", str(db), "enroll", "--flight", *flight, "--manifest",
                            str(manifest), "--photos-root", str(demo_photos))  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    listed = json.loads(gate_matcher("--db", str(db), "gallery", "list", "--json").stdout)
    assert [(f["flight"], f["travellers"]) for f in listed] == [("BA0283/2026-11-25/LAX", 2)]
    shown = gate_matcher("--db", str(db), "gallery", "show", "--flight", *flight, "--json")
    travellers = json.loads(shown.stdout)
    assert [t["traveller_id"] for t in travellers] == ["P1", "P2"]
    assert "template" not in shown.stdout and "token" not in shown.stdout

    one = gate_matcher(
        "--db", str(db), "gallery", "delete", "--flight", *flight, "--traveller", "P1"
    )
    assert one.returncode == 0 and "deleted traveller P1" in one.stdout
    everyone = gate_matcher("--db", str(db), "gallery", "delete", "--flight", *flight)
    assert everyone.returncode == 0 and "1 record" in everyone.stdout
    assert gate_matcher("--db", str(db), "gallery", "show", "--flight", *flight).returncode == 1
    bad = gate_matcher(
        "--db", str(db), "gallery", "show", "--flight", "BA", "1", "2026-13-01", "LAX"
    )
    assert bad.returncode == 2 and "date" in bad.stderr


def test_serve_with_a_missing_pki_is_one_line(tmp_path):
    missing = gate_matcher(
        "--db", str(tmp_path / "g.sqlite"), "serve", "--pki", str(tmp_path / "no")
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "is not a service PKI" in missing.stderr and "--dev-pki" in missing.stderr


def _serve_on_a_busy_port(tmp_path, pki, env: dict[str, str]) -> tuple[int, str, int]:
    """`gate-matcher serve` (the console script a technician runs) on a port another
    program holds: (exit code, stderr, the port)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(console_script("gate-matcher")), "--db", str(tmp_path / "g.sqlite"), "serve",
             "--pki", str(pki.root), "--address", f"127.0.0.1:{port}", "--workers", "1"],
            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
    return result.returncode, result.stderr, port


def test_serve_on_a_port_in_use_is_one_clear_line_without_grpc_core_logs(tmp_path, pki):
    code, stderr, port = _serve_on_a_busy_port(tmp_path, pki, without_grpc_logging())
    assert code == 2
    assert stderr.splitlines() == [
        f"gate-matcher serve: could not bind the matching service to 127.0.0.1:{port}"
        " (in use by another program, or not an address of this host)"
    ]
    assert not GRPC_CORE_LINE.search(stderr)


def test_a_technicians_own_grpc_verbosity_is_kept(tmp_path, pki):
    # GRPC_VERBOSITY=ERROR asks for the C core's errors: they come back, beside ours.
    code, stderr, _ = _serve_on_a_busy_port(
        tmp_path, pki, without_grpc_logging(GRPC_VERBOSITY="ERROR")
    )
    assert code == 2 and GRPC_CORE_LINE.search(stderr), stderr
    assert "could not bind the matching service" in stderr.splitlines()[-1]

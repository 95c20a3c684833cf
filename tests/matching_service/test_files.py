"""The service's files are its owner's alone: galleries (templates, names, booking
references), tokens, the audit and the development PKI.

The attack this reproduces: run by hand, ``gallery.sqlite`` and its WAL were 0644 and the
PKI folders 0755, so any local user could read templates and booking references.
"""

from __future__ import annotations

import datetime as dt
import os
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gate_contract.keys import DeviceScope, load_private
from matching_service.dev_ca import create_dev_pki
from matching_service.gallery import Gallery
from matching_service.store import open_db


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_database_and_its_wal_are_owner_only_even_under_a_loose_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "gallery.sqlite"
        gallery = Gallery(db)
        assert gallery.size("BA0283/2026-11-25/LAX") == 0
        companions = [p for p in tmp_path.iterdir() if p.name.startswith("gallery.sqlite")]
    finally:
        os.umask(old)
    assert {p.name for p in companions} >= {"gallery.sqlite", "gallery.sqlite-wal"}
    assert all(_mode(p) == 0o600 for p in companions), {p.name: oct(_mode(p)) for p in companions}


def test_a_database_left_readable_is_tightened(tmp_path, caplog) -> None:
    db = tmp_path / "old.sqlite"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    open_db(db).close()
    assert _mode(db) == 0o600
    assert "readable by others" in caplog.text


def test_the_development_pki_folders_are_owner_only(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        layout = create_dev_pki(tmp_path / "pki")
    finally:
        os.umask(old)
    for folder in (layout.root, layout.server_cert.parent, layout.device_cert.parent):
        assert _mode(folder) == 0o700, folder
    for key in (layout.ca_key, layout.server_key, layout.device_key, layout.signing_key):
        assert _mode(key) == 0o600, key


def test_a_development_pki_from_before_device_scopes_is_made_anew(tmp_path):
    """A PKI made by an older set-up has a device certificate with no airport: its demo
    failed with "device is enrolled for no airport"; set-up makes it anew instead."""
    layout = create_dev_pki(tmp_path / "pki")
    ca_key = load_private(layout.ca_key)
    ca_name = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes()).subject
    now = dt.datetime.now(dt.UTC)
    unscoped = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "gate-dev-0001")]))
        .issuer_name(ca_name)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    layout.device_cert.write_bytes(unscoped.public_bytes(serialization.Encoding.PEM))
    again = create_dev_pki(tmp_path / "pki")
    cert = x509.load_pem_x509_certificate(again.device_cert.read_bytes())
    assert DeviceScope.of(cert) is not None

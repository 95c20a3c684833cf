"""`gate-matcher`: run the reference matching service, enroll galleries and devices, bench.

``serve`` runs the matching API (mutual TLS), the enrollment API (server TLS, its own
port), health on both, and the retention schedule. ``issue-token`` makes a one-time
device enrollment token. ``enroll`` builds a flight gallery from a JSON or CSV manifest.
``retention`` runs the retention rules once. ``calibrate`` and ``bench`` measure the
matcher on a ``<identity>/*.jpg`` dataset. ``--recognizer`` (``dlib``, the default, or
``mobilefacenet``) picks the face recognizer for ``serve``, ``enroll`` and ``calibrate``:
a gallery enrolled with one is never served by another.
"""

from __future__ import annotations

import os

# gRPC's C core logs to stderr on its own ("Failed to add port", "Handshake failed") and
# reads GRPC_VERBOSITY once, when grpc is first imported: so it is set here, before any
# import that may load grpc. Every failure it reports reaches the person at the terminal
# as one line of ours instead. A GRPC_VERBOSITY already set (ERROR, DEBUG) is kept.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import datetime as dt
import json
import logging
import re
import signal
import sys
import threading
from importlib.metadata import entry_points
from pathlib import Path

from gate_contract.command_line import ArgumentParser, non_negative_number, positive_number
from gate_contract.keys import DeviceScope, PkiLayout
from gate_contract.paths import data_dir
from gate_contract.progress import Progress
from matching_service.dev_ca import create_dev_pki
from matching_service.errors import (
    GalleryError,
    MatcherError,
    RecognizerUnavailable,
    TemplateMismatch,
)
from matching_service.gallery import Gallery, flight_key
from matching_service.recognizers import (
    DEFAULT_RECOGNIZER,
    RECOGNIZERS,
    open_recognizer,
)

# Commands other packages add (e.g. testbed's bench over real gates).
PLUGIN_GROUP = "gate_matcher.commands"
DEFAULT_DB = data_dir() / "matcher" / "gallery.sqlite"
FLIGHT_METAVAR = ("CARRIER", "NUMBER", "DATE", "AIRPORT")


_CARRIER = re.compile(r"[A-Z0-9]{2,3}")
_NUMBER = re.compile(r"[0-9]{1,4}[A-Z]?")
_AIRPORT = re.compile(r"[A-Z]{3}")


def flight_problem(carrier: str, number: str, date: str, airport: str) -> str | None:
    """What is wrong with a flight named on the command line (None: nothing), so a bad
    value is refused instead of stored as a gallery no gate ever opens."""
    if not _CARRIER.fullmatch(carrier):
        return f"carrier {carrier!r} must be an IATA airline code (2-3 letters or digits)"
    if not _NUMBER.fullmatch(number):
        return f"flight number {number!r} must be 1..4 digits and an optional letter"
    try:
        parsed = dt.date.fromisoformat(date)
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != date:
        return f"date {date!r} must be an ISO date, YYYY-MM-DD"
    if not _AIRPORT.fullmatch(airport):
        return f"airport {airport!r} must be an IATA airport code (3 letters)"
    return None


def _enroll(args: argparse.Namespace) -> int:
    carrier, number, date, airport = (value.strip().upper() for value in args.flight)
    problem = flight_problem(carrier, number, date, airport)
    if problem:
        print(f"gate-matcher enroll: {problem}; nothing was enrolled", file=sys.stderr)
        return 2
    try:
        recognizer = open_recognizer(args.recognizer)
        report = Gallery(args.db, recognizer.info).enroll_manifest(
            flight_key(carrier, number, date, airport),
            args.manifest,
            recognizer,
            photos_root=args.photos_root,
            progress=Progress.for_command(as_json=False),
        )
    except (GalleryError, RecognizerUnavailable) as exc:
        print(f"gate-matcher: enrollment failed: {exc}", file=sys.stderr)
        return 2
    for skipped in report.skipped:
        print(f"skipped {skipped}", file=sys.stderr)
    if report.replaced:
        print(f"replaced {report.replaced} templates made by another recognizer")
    print(
        f"enrolled {report.travellers} travellers from {report.photos} photos "
        f"with {recognizer.info.template_id}"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from matching_service.audit import AuditLog
    from matching_service.encoder_pool import EncoderPool
    from matching_service.errors import RevocationError
    from matching_service.revocation import RevocationList

    pki = create_dev_pki(args.pki) if args.dev_pki else PkiLayout(args.pki)
    missing = [p for p in (pki.ca_cert, pki.server_cert, pki.server_key) if not p.is_file()]
    if missing:
        print(
            f"gate-matcher serve: --pki {args.pki} is not a service PKI ({missing[0]} is"
            " missing); give the folder made for this service, or --dev-pki for development",
            file=sys.stderr,
        )
        return 2
    try:
        revocations = RevocationList(args.revocations) if args.revocations else None
    except RevocationError as exc:
        print(f"gate-matcher: {exc}", file=sys.stderr)
        return 2
    audit = AuditLog(args.db)
    try:
        recognizer = open_recognizer(args.recognizer)
    except RecognizerUnavailable as exc:
        print(f"gate-matcher: {exc}", file=sys.stderr)
        return 2
    gallery = Gallery(args.db, recognizer.info)
    pool = EncoderPool(args.workers, recognizer=args.recognizer)
    try:
        return _run_servers(args, pki, gallery, audit, revocations, pool, recognizer)
    except (TemplateMismatch, RecognizerUnavailable) as exc:
        print(f"gate-matcher: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # a key file unreadable, an address in use
        print(f"gate-matcher serve: {exc}", file=sys.stderr)
        return 2
    finally:
        pool.close()


def _run_servers(args, pki, gallery, audit, revocations, pool, recognizer) -> int:
    """Serve until SIGTERM/SIGINT; live captures are encoded by ``pool``."""
    from matching_service.enrollment import (
        EnrollmentService,
        EnrollmentTokens,
        start_enrollment_server,
    )
    from matching_service.retention import RetentionScheduler
    from matching_service.server import service_from_pki, start_server
    from matching_service.sessions import ReplayGuard

    stop = threading.Event()  # handlers first: a SIGTERM right after start-up still counts
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = service_from_pki(
        pki,
        gallery,
        recognizer,
        pool,
        audit=audit,
        revocations=revocations,
        replays=ReplayGuard(args.db),
    )
    server, port = start_server(service, pki, args.address)
    print(
        f"matching service listening on port {port} (mutual TLS, {pool.workers} encoder processes"
        f", {recognizer.info.template_id})",
        flush=True,
    )
    enrollment_server = None
    if args.enroll_address:
        tokens = EnrollmentTokens(args.db)
        enrollment = EnrollmentService(pki, tokens, audit=audit, revocations=revocations)
        enrollment_server, enroll_port = start_enrollment_server(
            enrollment, pki, args.enroll_address
        )
        print(f"enrollment listening on port {enroll_port} (server TLS)", flush=True)
    retention = RetentionScheduler(gallery, interval_s=args.retention_interval).start()
    stop.wait()
    service.health.enter_graceful_shutdown()
    retention.stop()
    if enrollment_server is not None:
        enrollment_server.stop(grace=2)
    server.stop(grace=2).wait()
    return 0


def _issue_token(args: argparse.Namespace) -> int:
    from matching_service.enrollment import EnrollmentTokens

    try:
        scope = DeviceScope(args.airport.upper(), tuple(g.upper() for g in args.gates or ()))
        token = EnrollmentTokens(args.db).issue(args.device_id, scope=scope, ttl_s=args.ttl)
    except ValueError as exc:
        print(f"gate-matcher: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _token(args: argparse.Namespace) -> int:
    from matching_service.enrollment import EnrollmentTokens

    tokens = EnrollmentTokens(args.db)
    if args.token == "revoke":
        count = tokens.revoke(args.device_id)
        print(f"revoked {count} unused token(s) of {args.device_id}")
        return 0
    listed = tokens.list()
    if args.json:
        print(json.dumps(listed))
        return 0
    for t in listed:
        gates = f" gates {' '.join(t['gates'])}" if t["gates"] else ""
        print(
            f"{t['id']}  {t['device_id']:<24} {t['state']:<8} {t['airport']}{gates}"
            f"  expires {_iso_ms(t['expires_at_ms'])}"
            + (f"  certificate {t['certificate_serial']}" if t["certificate_serial"] else "")
        )
    if not listed:
        print("no tokens issued")
    return 0


def _gallery(args: argparse.Namespace) -> int:
    gallery = Gallery(args.db)
    if args.gallery == "list":
        flights = gallery.flights()
        if args.json:
            print(json.dumps(flights))
        for f in [] if args.json else flights:
            print(f"{f['flight']:<28} {f['travellers']:>5} travellers  {f['recognizer']}")
        if not flights and not args.json:
            print("no galleries")
        return 0
    carrier, number, date, airport = (value.strip().upper() for value in args.flight)
    problem = flight_problem(carrier, number, date, airport)
    if problem:
        print(f"gate-matcher gallery: {problem}", file=sys.stderr)
        return 2
    key = flight_key(carrier, number, date, airport)
    if args.gallery == "show":
        travellers = gallery.travellers(key)
        if args.json:
            print(json.dumps(travellers))
            return 0
        for t in travellers:
            verified = _iso_ms(t["verified_at_ms"]) if t["verified_at_ms"] else "never"
            print(f"{t['traveller_id']:<20} {t['category']:<12} {t['photos']} photo(s),"
                  f" verified {verified}")  # fmt: skip
        print(f"{key}: {len(travellers)} travellers")
        return 0 if travellers else 1
    deleted = gallery.delete(key, args.traveller)
    what = f"traveller {args.traveller} of {key}" if args.traveller else f"the gallery of {key}"
    if not deleted:
        print(f"gate-matcher gallery delete: no {what}", file=sys.stderr)
        return 1
    print(f"deleted {what} ({deleted} record(s)); gates see it at their next session refresh")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from matching_service.errors import RevocationError
    from matching_service.revocation import add_to_file, parse_serial

    try:
        serial = parse_serial(args.serial) if args.serial else None
        add_to_file(args.revocations, serial=serial, device_id=args.device_id)
    except (RevocationError, OSError) as exc:
        print(f"gate-matcher revoke: {exc}", file=sys.stderr)
        return 2
    what = f"certificate {hex(serial)}" if serial is not None else f"device {args.device_id}"
    print(f"revoked {what} in {args.revocations} (a serving matcher re-reads it)")
    return 0


def _iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def _retention(args: argparse.Namespace) -> int:
    from matching_service.retention import RetentionScheduler

    deleted = RetentionScheduler(Gallery(args.db), interval_s=args.margin).run_once()
    print(f"deleted {len(deleted)} gallery records")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Thresholds for 1:1 and 1:N per photo count; ``--save`` stores them in the gallery."""
    from matching_service.calibration import calibrate_dataset

    photos = tuple(range(1, args.photos_per_traveller + 1))
    try:
        recognizer = open_recognizer(args.recognizer)
        points, report = calibrate_dataset(
            args.dataset, recognizer, photos, Progress.for_command(as_json=False)
        )
    except (MatcherError, ValueError) as exc:
        print(f"gate-matcher calibrate: {exc}", file=sys.stderr)
        return 2
    if args.save:
        Gallery(args.db, recognizer.info).save_calibration(points)
        report["saved_to"] = str(args.db)
    if args.output:
        args.output.write_text(json.dumps([p.to_json() for p in points]) + "\n")
        report["written_to"] = str(args.output)
    print(json.dumps(report))
    return 0


def _recognizer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recognizer",
        choices=RECOGNIZERS,
        default=DEFAULT_RECOGNIZER,
        help="face recognizer (mobilefacenet is opt-in: see the README's licence note)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gate-appliance")
    except PackageNotFoundError:
        return "unknown"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gate-matcher", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gate-matcher {_version()}")
    parser.add_argument(
        "--db",
        type=Path,
        default=DEFAULT_DB,
        metavar="FILE",
        help="the gallery database; its folder must exist",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the gRPC API with mutual TLS")
    serve.add_argument(
        "--pki",
        type=Path,
        default=data_dir() / "pki",
        metavar="DIR",
        help="the service's PKI: CA, server certificate and key, signing and sealing keys",
    )
    serve.add_argument(
        "--address", default="127.0.0.1:50051", metavar="HOST:PORT", help="the matching API"
    )
    serve.add_argument(
        "--enroll-address",
        metavar="HOST:PORT",
        help="also serve device enrollment (server TLS) here (default: not served)",
    )
    serve.add_argument(
        "--revocations",
        type=Path,
        metavar="FILE",
        help="JSON revocation list, re-read while serving (default: none)",
    )
    serve.add_argument(
        "--retention-interval",
        type=positive_number,
        default=300.0,
        metavar="SECONDS",
        help="how often the retention rules run",
    )
    serve.add_argument("--dev-pki", action="store_true", help="create a development PKI if absent")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="encoder processes (default: one per CPU)",
    )
    _recognizer_option(serve)
    serve.set_defaults(handler=_serve)
    token = commands.add_parser("issue-token", help="one-time enrollment token for a device")
    token.add_argument(
        "--device-id", required=True, metavar="ID", help="the device the token enrols"
    )
    token.add_argument(
        "--ttl",
        type=positive_number,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="how long the token can be used",
    )
    token.add_argument(
        "--airport",
        required=True,
        metavar="IATA",
        help="code of the airport the device boards at",
    )
    token.add_argument(
        "--gates",
        nargs="*",
        metavar="GATE",
        help="limit it to these gates (default: any gate of the airport)",
    )
    token.set_defaults(handler=_issue_token)
    tokens = commands.add_parser("token", help="list or revoke enrollment tokens")
    token_commands = tokens.add_subparsers(dest="token", required=True)
    listing = token_commands.add_parser("list", help="every token: device, scope, state")
    listing.add_argument("--json", action="store_true", help="one JSON list")
    listing.set_defaults(handler=_token)
    revoke = token_commands.add_parser("revoke", help="expire a device's unused tokens now")
    revoke.add_argument(
        "--device-id", required=True, metavar="ID", help="the device whose tokens to expire"
    )
    revoke.set_defaults(handler=_token)
    galleries = commands.add_parser("gallery", help="list, show or delete flight galleries")
    gallery_commands = galleries.add_subparsers(dest="gallery", required=True)
    listing = gallery_commands.add_parser("list", help="every flight held, with its size")
    listing.add_argument("--json", action="store_true", help="one JSON list")
    listing.set_defaults(handler=_gallery)
    flight_args = {
        "nargs": 4,
        "required": True,
        "metavar": FLIGHT_METAVAR,
        "help": "the flight, e.g. BA 0283 2026-11-25 LAX",
    }
    show = gallery_commands.add_parser("show", help="a flight's travellers (no templates)")
    show.add_argument("--flight", **flight_args)
    show.add_argument("--json", action="store_true", help="one JSON list")
    show.set_defaults(handler=_gallery)
    delete = gallery_commands.add_parser("delete", help="a flight's gallery, or one traveller")
    delete.add_argument("--flight", **flight_args)
    delete.add_argument(
        "--traveller", metavar="ID", help="only this traveller (default: the whole gallery)"
    )
    delete.set_defaults(handler=_gallery)
    revoke_cert = commands.add_parser(
        "revoke",
        help="revoke a device certificate (e.g. the old one after `gatectl provision --rotate`)",
        description="Adds to the JSON revocation list `serve --revocations FILE` reads; the"
        " serving matcher re-reads it without a restart.",
    )
    revoke_cert.add_argument(
        "--revocations", type=Path, required=True, metavar="FILE", help="the list file"
    )
    which = revoke_cert.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--serial", metavar="SERIAL", help="certificate serial, 0x... hex or decimal"
    )
    which.add_argument("--device-id", metavar="ID", help="every certificate of this device")
    revoke_cert.set_defaults(handler=_revoke)
    enroll = commands.add_parser("enroll", help="build a flight gallery from document photos")
    enroll.add_argument(
        "--flight",
        nargs=4,
        required=True,
        metavar=FLIGHT_METAVAR,
        help="the flight, e.g. BA 0283 2026-11-25 LAX",
    )
    enroll.add_argument(
        "--manifest",
        type=Path,
        required=True,
        metavar="FILE",
        help="JSON list or CSV of traveller_id, category, photos (or photo)[, pnr, name]",
    )
    enroll.add_argument(
        "--photos-root",
        type=Path,
        metavar="DIR",
        help="folder every photo must be in (default: the manifest's folder)",
    )
    _recognizer_option(enroll)
    enroll.set_defaults(handler=_enroll)
    retention = commands.add_parser("retention", help="apply the retention rules once")
    retention.add_argument(
        "--margin",
        type=non_negative_number,
        default=300.0,
        metavar="SECONDS",
        help="also delete what would expire within this time",
    )
    retention.set_defaults(handler=_retention)
    calibrate = commands.add_parser(
        "calibrate", help="1:1 and 1:N thresholds of a recognizer on a dataset"
    )
    calibrate.add_argument(
        "--dataset", type=Path, required=True, metavar="DIR", help="<identity>/*.jpg"
    )
    calibrate.add_argument(
        "--photos-per-traveller",
        type=_positive,
        default=3,
        metavar="K",
        help="calibrate templates of 1..K photos",
    )
    calibrate.add_argument("--save", action="store_true", help="store them in the gallery db")
    calibrate.add_argument(
        "--output", type=Path, metavar="FILE", help="also write them to this JSON file"
    )
    _recognizer_option(calibrate)
    calibrate.set_defaults(handler=_calibrate)
    for plugin in entry_points(group=PLUGIN_GROUP):
        plugin.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.db == DEFAULT_DB:
        args.db.parent.mkdir(parents=True, exist_ok=True)
    elif not args.db.parent.is_dir():
        # A typo'd --db must not silently become a fresh, empty gallery.
        print(f"gate-matcher: --db {args.db}: the folder {args.db.parent} does not exist",
              file=sys.stderr)  # fmt: skip
        return 2
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "json", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEFAULT_DB", "FLIGHT_METAVAR", "PLUGIN_GROUP", "build_parser", "flight_problem", "main"]

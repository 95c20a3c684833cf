"""`gate-matcher`: run the reference matching service or enroll a flight gallery."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from appliance.paths import data_dir
from appliance.pki import PkiLayout, create_dev_pki
from matching_service.gallery import Gallery, GalleryError, flight_key
from matching_service.recognizer import FaceEncoder, NoFaceFound


def _enroll(args: argparse.Namespace) -> int:
    carrier, number, date, airport = args.flight
    try:
        count = Gallery(args.db).enroll_manifest(
            flight_key(carrier, number, date, airport), args.manifest, FaceEncoder()
        )
    except (GalleryError, NoFaceFound) as exc:
        print(f"gate-matcher: enrollment failed: {exc}", file=sys.stderr)
        return 2
    print(f"enrolled {count} travellers")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from matching_service.server import service_from_pki, start_server

    pki = create_dev_pki(args.pki) if args.dev_pki else PkiLayout(args.pki)
    service = service_from_pki(pki, Gallery(args.db), FaceEncoder())
    server, port = start_server(service, pki, args.address)
    print(f"matching service listening on port {port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gate-matcher", description=__doc__)
    parser.add_argument("--db", type=Path, default=data_dir() / "matcher" / "gallery.sqlite")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the gRPC API with mutual TLS")
    serve.add_argument("--pki", type=Path, default=data_dir() / "pki")
    serve.add_argument("--address", default="127.0.0.1:50051")
    serve.add_argument("--dev-pki", action="store_true", help="create a development PKI if absent")
    serve.set_defaults(handler=_serve)
    enroll = commands.add_parser("enroll", help="build a flight gallery from document photos")
    enroll.add_argument(
        "--flight", nargs=4, required=True, metavar=("CARRIER", "NUMBER", "DATE", "AIRPORT")
    )
    enroll.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help='JSON list of {"traveller_id", "category", "photo"}',
    )
    enroll.set_defaults(handler=_enroll)
    args = parser.parse_args(argv)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

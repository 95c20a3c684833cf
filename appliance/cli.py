"""`gatectl`: the appliance's command line for field technicians and developers."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from appliance import demo

    return demo.main(args.dataset, args.json)


def _read_key(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"gatectl: cannot read relay key from {path}: {exc}") from exc


def _serial_test(args: argparse.Namespace) -> int:
    from firmware_bridge.serial_check import run_serial_test

    if args.simulate:
        import os

        from firmware_bridge.simulator import Simulator

        key = os.urandom(32)
        with Simulator(key) as simulator:
            print(f"simulated gate MCU on {simulator.port}")
            return 0 if run_serial_test(simulator.port, key, pulse=args.pulse) else 1
    if not (args.port and args.key_file):
        raise SystemExit("gatectl serial test: give --port and --key-file, or --simulate")
    return 0 if run_serial_test(args.port, _read_key(args.key_file), pulse=args.pulse) else 1


def _bench_serial(args: argparse.Namespace) -> int:
    from firmware_bridge.bench import bench_serial

    result = bench_serial(rounds=args.rounds, fuzz_frames=args.fuzz_frames)
    _print_figures(result, args.json)
    return 0 if result["relay_opened_by_fuzz"] == 0 else 1


def _print_figures(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


def _default_ledger() -> Path:
    from appliance.paths import data_dir

    return data_dir() / "purge-ledger.jsonl"


def _timestamp(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from exc


def _audit_verify(args: argparse.Namespace) -> int:
    from appliance.audit import audit_verify

    return audit_verify(args.ledger, args.public_key)


def _audit_export(args: argparse.Namespace) -> int:
    from appliance.audit import audit_export

    return audit_export(args.ledger, args.since, args.until)


def _bench_purge(args: argparse.Namespace) -> int:
    from appliance.purge_bench import bench_purge

    result = bench_purge(args.transactions)
    _print_figures(result, args.json)
    return 0 if result["image_files_written"] == 0 else 1


def _run(args: argparse.Namespace) -> int:
    from appliance import service

    return service.main(args.config)


def _bench_vision(args: argparse.Namespace) -> int:
    from appliance.bench import bench_vision, dataset_frames, packaged_frames

    frames = dataset_frames(args.dataset) if args.dataset else packaged_frames()
    result = bench_vision(frames, runtime=args.runtime, variant=args.model, peer=not args.no_peer)
    _print_figures(result, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatectl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a boarding queue end to end on embedded defaults")
    demo.add_argument("--dataset", type=Path, help="folder of <identity>/*.jpg for a larger run")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser("run", help="run the gate service (what systemd starts)")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(handler=_run)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    benches = bench.add_subparsers(dest="bench", required=True)
    vision = benches.add_parser("vision", help="detect + quality per 1280x720 frame vs dlib HOG")
    vision.add_argument(
        "--dataset",
        type=Path,
        help="<identity>/*.jpg and _nonface/ (default: images that packages ship)",
    )
    vision.add_argument("--model", choices=("full", "short"), default="full")
    vision.add_argument("--runtime", choices=("onnxruntime", "mediapipe"), default="onnxruntime")
    vision.add_argument("--no-peer", action="store_true", help="skip the dlib HOG peer")
    vision.add_argument("--json", action="store_true", help="one JSON object on the last line")
    vision.set_defaults(handler=_bench_vision)
    serial_bench = benches.add_parser("serial", help="command round trips and fuzzing over a pty")
    serial_bench.add_argument("--rounds", type=int, default=200)
    serial_bench.add_argument("--fuzz-frames", type=int, default=5000)
    serial_bench.add_argument(
        "--json", action="store_true", help="one JSON object on the last line"
    )
    serial_bench.set_defaults(handler=_bench_serial)

    purge = benches.add_parser("purge", help="verdict -> every buffer zeroized, 720p capture")
    purge.add_argument("--transactions", type=int, default=1000)
    purge.add_argument("--json", action="store_true", help="one JSON object on the last line")
    purge.set_defaults(handler=_bench_purge)

    audit = commands.add_parser("audit", help="check or export the purge ledger for auditors")
    audits = audit.add_subparsers(dest="audit", required=True)
    verify = audits.add_parser("verify", help="check the hash chain and signatures")
    verify.add_argument("--ledger", type=Path, default=_default_ledger())
    verify.add_argument("--public-key", type=Path, help="ledger public key (default: beside it)")
    verify.set_defaults(handler=_audit_verify)
    export = audits.add_parser("export", help="records as JSON lines, e.g. for a regulator")
    export.add_argument("--ledger", type=Path, default=_default_ledger())
    export.add_argument("--since", type=_timestamp, help="ISO time, inclusive (UTC if naive)")
    export.add_argument("--until", type=_timestamp, help="ISO time, exclusive (UTC if naive)")
    export.set_defaults(handler=_audit_export)

    serial = commands.add_parser("serial", help="check the serial link to the gate MCU")
    serial_commands = serial.add_subparsers(dest="serial", required=True)
    check = serial_commands.add_parser("test", help="hello, status, indicator cycle, buzzer")
    check.add_argument("--port", help="serial device, e.g. /dev/serial/by-id/...")
    check.add_argument("--key-file", type=Path, help="file holding the relay HMAC key in hex")
    check.add_argument("--pulse", action="store_true", help="also pulse the relay (opens the gate)")
    check.add_argument("--simulate", action="store_true", help="test against the MCU simulator")
    check.set_defaults(handler=_serial_test)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from appliance.hardening import harden_process, install_log_filters

    harden_process()  # no core dumps, not dumpable: a crash must not spill frames
    install_log_filters()  # no binary or base64 blobs in any log line
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

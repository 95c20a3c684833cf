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


def _simulate(args: argparse.Namespace) -> int:
    from appliance.simulate import simulate_main

    return simulate_main(args.travellers, args.dataset, args.json, None, args.seed)


def _run(args: argparse.Namespace) -> int:
    from appliance import service

    return service.main(args.config)


def _bench_vision(args: argparse.Namespace) -> int:
    from appliance.bench import bench_vision, dataset_frames, packaged_frames

    frames = (lambda: dataset_frames(args.dataset)) if args.dataset else packaged_frames
    result = bench_vision(frames, runtime=args.runtime, variant=args.model, peer=not args.no_peer)
    _print_figures(result, args.json)
    return 0


def _provision(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from appliance.provision import (
        QUESTIONS,
        Answers,
        ProvisionError,
        ask,
        confirm,
        load_answers,
        provision,
    )

    answers = Answers(data_dir=str(_default_data_dir()), config=str(_default_config()))
    try:
        if args.answers:
            for name, value in load_answers(args.answers).items():
                setattr(answers, name, value)
        for name in QUESTIONS:
            value = getattr(args, name, None)
            if value is not None:
                setattr(answers, name, str(value))
        if args.token_file:
            answers.token = args.token_file.read_text().strip()
        elif not answers.token and os.environ.get("GATE_ENROLL_TOKEN"):
            answers.token = os.environ["GATE_ENROLL_TOKEN"]
        required = ("device_id", "airport", "gate", "carrier", "flight", "date", "matcher")
        missing = [n for n in (*required, "enroll", "ca_file") if not getattr(answers, n)]
        guided = args.guided or (not args.non_interactive and bool(missing) and sys.stdin.isatty())
        if guided:
            ask(answers)
            if not args.dry_run and not confirm():
                print("provisioning cancelled; nothing was changed")
                return 1
        provision(
            dataclasses.replace(answers),
            dry_run=args.dry_run,
            rotate=args.rotate,
            owner=args.owner,
            check_matcher=not args.no_check,
        )
    except (ProvisionError, OSError) as exc:
        print(f"gatectl provision: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\nprovisioning cancelled", file=sys.stderr)
        return 1
    return 0


def _default_data_dir() -> Path:
    from appliance.paths import data_dir

    return data_dir()


def _selftest(args: argparse.Namespace) -> int:
    from appliance import selftest

    return selftest.main(
        args.config, relay=args.relay, as_json=args.json, min_free_mb=args.min_free_mb
    )


def _status(args: argparse.Namespace) -> int:
    from appliance.config import ConfigError, load_config
    from appliance.status import show_status

    path = args.status_file
    if path is None:
        try:
            path = load_config(args.config).status_path
        except ConfigError as exc:
            print(f"gatectl status: {exc}", file=sys.stderr)
            return 2
    return show_status(path, as_json=args.json)


def _default_config() -> Path:
    import os

    return Path(os.environ.get("GATE_CONFIG", "/etc/gate-appliance/gate.toml"))


def _add_field_commands(commands) -> None:
    from appliance.provision import QUESTIONS

    prov = commands.add_parser(
        "provision",
        help="enrol this unit and write its configuration (guided or non-interactive)",
        description="Guided on a terminal when answers are missing; otherwise from flags "
        "and/or --answers FILE (flags win). Idempotent; --dry-run changes nothing.",
    )
    for name, (question, flag) in QUESTIONS.items():
        prov.add_argument(flag, dest=name, help=question)
    prov.add_argument("--answers", type=Path, help="TOML file of answers (device_id = ...)")
    prov.add_argument("--token-file", type=Path, help="read the enrollment token from a file")
    prov.add_argument("--dry-run", action="store_true", help="show each step, change nothing")
    prov.add_argument(
        "--rotate", action="store_true", help="new device key + certificate (old moved aside)"
    )
    prov.add_argument("--owner", help="when run as root: give the files to this user")
    prov.add_argument("--guided", action="store_true", help="always ask, even with answers")
    prov.add_argument(
        "--non-interactive", "-y", action="store_true", help="never ask; fail on missing answers"
    )
    prov.add_argument(
        "--no-check", action="store_true", help="skip the final mutual-TLS health check"
    )
    prov.set_defaults(handler=_provision)

    selftest = commands.add_parser("selftest", help="PASS/FAIL checklist of the whole unit")
    selftest.add_argument("--config", type=Path, default=_default_config())
    selftest.add_argument(
        "--relay", action="store_true", help="also pulse the relay (opens the gate)"
    )
    selftest.add_argument("--json", action="store_true", help="one JSON object")
    selftest.add_argument("--min-free-mb", type=float, default=200.0, metavar="MB")
    selftest.set_defaults(handler=_selftest)

    status = commands.add_parser("status", help="state, flight, counters, links, last errors")
    status.add_argument("--config", type=Path, default=_default_config())
    status.add_argument("--status-file", type=Path, help="read this file instead")
    status.add_argument("--json", action="store_true", help="the status as one JSON object")
    status.set_defaults(handler=_status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatectl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a boarding queue end to end on embedded defaults")
    demo.add_argument("--dataset", type=Path, help="folder of <identity>/*.jpg for a larger run")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.set_defaults(handler=_demo)

    simulate = commands.add_parser(
        "simulate", help="board a flight through the real parts with a mix of exceptions"
    )
    simulate.add_argument("--travellers", type=int, default=50)
    simulate.add_argument("--dataset", type=Path, help="<identity>/*.jpg (default: packaged)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--json", action="store_true", help="one JSON object on the last line")
    simulate.set_defaults(handler=_simulate)

    run = commands.add_parser("run", help="run the gate service (what systemd starts)")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(handler=_run)
    _add_field_commands(commands)

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

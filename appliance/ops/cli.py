"""`gatectl`: the appliance's command line for field technicians and developers."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

# Commands other packages add (e.g. testbed's demo, simulate and benches).
PLUGIN_GROUP = "gatectl.commands"


def _read_key(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"gatectl: cannot read relay key from {path}: {exc}") from exc


def _serial_test(args: argparse.Namespace) -> int:
    from firmware_bridge.tools.serial_check import run_serial_test

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


def _default_ledger() -> Path:
    from gate_contract.paths import data_dir

    return data_dir() / "purge-ledger.jsonl"


def _timestamp(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from exc


def _audit_verify(args: argparse.Namespace) -> int:
    from appliance.custody.audit import audit_verify

    return audit_verify(args.ledger, args.public_key)


def _audit_export(args: argparse.Namespace) -> int:
    from appliance.custody.audit import audit_export

    return audit_export(args.ledger, args.since, args.until)


def _run(args: argparse.Namespace) -> int:
    from appliance.service.runner import main as run_service_main

    return run_service_main(args.config)


def _provision(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from appliance.errors import ProvisionError
    from appliance.ops.provision import QUESTIONS, Answers, ask, confirm, load_answers, provision

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
    from gate_contract.paths import data_dir

    return data_dir()


def _selftest(args: argparse.Namespace) -> int:
    from appliance.ops import selftest

    return selftest.main(
        args.config, relay=args.relay, as_json=args.json, min_free_mb=args.min_free_mb
    )


def _status(args: argparse.Namespace) -> int:
    from appliance.errors import ConfigError
    from appliance.service.config import load_config
    from appliance.service.status import show_status

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
    from appliance.ops.provision import QUESTIONS

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


def _agents(args: argparse.Namespace) -> int:
    import getpass

    from appliance.errors import ConfigError
    from appliance.gate.agents import read_pin_file, remove_agent, set_pin

    try:
        if args.agents == "list":
            for agent_id in sorted(read_pin_file(args.file)):
                print(agent_id)
            return 0
        if args.agents == "remove":
            if not remove_agent(args.file, args.agent):
                print(f"gatectl agents: {args.agent} is not in {args.file}", file=sys.stderr)
                return 1
            print(f"removed {args.agent} from {args.file}")
            return 0
        if args.pin_stdin:
            pin = sys.stdin.readline().strip()
        else:
            pin = getpass.getpass(f"new PIN for {args.agent}: ")
            if getpass.getpass("again: ") != pin:
                print("gatectl agents: the two PINs differ; nothing changed", file=sys.stderr)
                return 2
        set_pin(args.file, args.agent, pin)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"gatectl agents: {exc}", file=sys.stderr)
        return 2
    print(f"PIN of {args.agent} set in {args.file}")
    return 0


def _add_agent_commands(commands) -> None:
    from gate_contract.paths import data_dir

    agents = commands.add_parser("agents", help="agent PINs for the agent station (scrypt)")
    actions = agents.add_subparsers(dest="agents", required=True)
    for name, text in (
        ("set-pin", "add an agent or change their PIN (asked twice, never echoed)"),
        ("remove", "remove an agent"),
        ("list", "list the agent ids"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--file", type=Path, default=data_dir() / "agents.json")
        if name != "list":
            action.add_argument("--agent", required=True, help="agent id, e.g. A123")
        if name == "set-pin":
            action.add_argument(
                "--pin-stdin", action="store_true", help="read the PIN from one line of stdin"
            )
        action.set_defaults(handler=_agents)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatectl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the gate service (what systemd starts)")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(handler=_run)
    _add_field_commands(commands)
    _add_agent_commands(commands)

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
    for plugin in entry_points(group=PLUGIN_GROUP):
        plugin.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from appliance.service.hardening import harden_process
    from appliance.service.log_filter import install_log_filters

    harden_process()  # no core dumps, not dumpable: a crash must not spill frames
    install_log_filters()  # no binary or base64 blobs in any log line
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

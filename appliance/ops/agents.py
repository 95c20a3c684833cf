"""``gatectl agents``: register the gate agents who may act at this unit.

* ``keygen --agent-id A1 --out DIR``: a new Ed25519 key pair for an agent's handheld
  (``A1.key``, 0600, stays on the handheld; ``A1.pub`` goes to each unit);
* ``add --agent-id A1 --public-key A1.pub [--pin] [--valid-until DATE]``: register (or
  update) an agent's key; ``--pin`` also asks for the agent station's PIN;
* ``set-pin --agent-id A1 [--pin-stdin]``: add an agent or change their station PIN
  (asked twice, never echoed; ``--pin-stdin`` reads one line, for provisioning scripts);
* ``list`` and ``remove --agent-id A1``;
* ``sign --key A1.key --agent-id A1 --command RELEASE --scope gate-lax-b42``: print one signed
  action, as the handheld app would show it (field checks and training).

The registry is ``[agents] file`` of the configuration (default: ``agents.json`` beside
the purge ledger), or ``--registry FILE``; the running service reads it at start.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import ConfigError
from appliance.gate.agents import (
    AGENT_ID_RE,
    AgentCommand,
    AgentEntry,
    AgentRegistry,
    check_new_pin,
    hash_pin,
    sign_action,
)
from gate_contract.keys import load_private, write_private_key, write_public_key


class AgentsCommandError(ValueError):
    """A ``gatectl agents`` mistake, said in one line."""


def _registry_path(args: argparse.Namespace) -> Path:
    if args.registry is not None:
        return args.registry
    from appliance.service.config import load_config

    try:
        return load_config(args.config).agents_path
    except ConfigError as exc:
        raise AgentsCommandError(f"{exc} (or give --registry FILE)") from exc


def _agent_id(text: str) -> str:
    if not AGENT_ID_RE.fullmatch(text):
        raise argparse.ArgumentTypeError("1..32 letters, digits, '_' or '-'")
    return text


def _keygen(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, pub_path = args.out / f"{args.agent_id}.key", args.out / f"{args.agent_id}.pub"
    if key_path.exists():
        raise AgentsCommandError(f"{key_path} exists; an agent's key is never overwritten")
    key = Ed25519PrivateKey.generate()
    write_private_key(key_path, key)
    write_public_key(pub_path, key.public_key())
    print(f"agent {args.agent_id}: private key {key_path} (keep it on the handheld),")
    print(f"public key {pub_path} (register it: gatectl agents add --public-key {pub_path})")
    return 0


def _load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AgentsCommandError(f"cannot read the public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AgentsCommandError(f"{path} is not an Ed25519 public key (gatectl agents keygen)")
    return key


def _ask_pin(from_stdin: bool = False) -> str:
    """A new PIN, checked: asked twice on a terminal, or one line of standard input."""
    if from_stdin:
        pin = sys.stdin.readline().strip()
    else:
        if not sys.stdin.isatty():
            raise AgentsCommandError("no terminal to ask for the PIN: use --pin-stdin")
        pin = getpass.getpass("Agent PIN (6 to 12 digits): ")
        if getpass.getpass("Again: ") != pin:
            raise AgentsCommandError("the two PINs differ; nothing was changed")
    try:
        check_new_pin(pin)
    except ValueError as exc:
        raise AgentsCommandError(f"{exc}; nothing was changed") from exc
    return pin


def _add(args: argparse.Namespace) -> int:
    path = _registry_path(args)
    registry = _load(path)
    key = _load_public(args.public_key)
    old = registry.agents.get(args.agent_id)
    pin_hash = old.pin_hash if old is not None else ""
    if args.pin:
        pin_hash = hash_pin(_ask_pin())
    registry.agents[args.agent_id] = AgentEntry(args.agent_id, key, pin_hash, args.valid_until)
    registry.save(path)
    verb = "updated" if old is not None else "registered"
    print(f"agent {args.agent_id} {verb} in {path}; restart the gate service to apply")
    return 0


def _set_pin(args: argparse.Namespace) -> int:
    path = _registry_path(args)
    registry = _load(path)
    pin_hash = hash_pin(_ask_pin(args.pin_stdin))
    old = registry.agents.get(args.agent_id) or AgentEntry(args.agent_id)
    registry.agents[args.agent_id] = replace(old, pin_hash=pin_hash)
    registry.save(path)
    print(f"PIN of {args.agent_id} set in {path}; restart the gate service to apply")
    return 0


def _load(path: Path) -> AgentRegistry:
    try:
        return AgentRegistry.load(path)
    except ConfigError as exc:
        raise AgentsCommandError(str(exc)) from exc


def _list(args: argparse.Namespace) -> int:
    path = _registry_path(args)
    registry = _load(path)
    if not registry.agents:
        print(f"no agents registered in {path}: no agent action is accepted at this gate")
        return 0
    for agent in sorted(registry.agents.values(), key=lambda a: a.agent_id):
        until = agent.valid_until.isoformat() if agent.valid_until else "no end date"
        key = "signing key" if agent.public_key else "no key (no signed actions)"
        pin = "PIN set" if agent.pin_hash else "no PIN (no station login)"
        print(f"{agent.agent_id:<32} {key:<27} {pin:<26} valid until {until}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    path = _registry_path(args)
    registry = _load(path)
    if registry.agents.pop(args.agent_id, None) is None:
        print(f"gatectl agents: {args.agent_id} is not registered in {path}", file=sys.stderr)
        return 1
    registry.save(path)
    print(f"agent {args.agent_id} removed from {path}; restart the gate service to apply")
    return 0


def _sign(args: argparse.Namespace) -> int:
    try:
        key = load_private(args.key)
    except (OSError, ValueError) as exc:
        raise AgentsCommandError(f"cannot read the agent key {args.key}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AgentsCommandError(f"{args.key} is not an Ed25519 private key")
    print(sign_action(key, args.agent_id, AgentCommand(args.command), args.scope))
    return 0


def add_agents_commands(commands: argparse._SubParsersAction, default_config: Path) -> None:
    agents = commands.add_parser("agents", help="register the agents who may act at this gate")
    verbs = agents.add_subparsers(dest="agents", required=True)

    def registry_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--config",
            type=Path,
            default=default_config,
            metavar="FILE",
            help="configuration naming the registry",
        )
        parser.add_argument(
            "--registry",
            "--file",
            type=Path,
            metavar="FILE",
            help="the registry file itself (default: the --config's)",
        )

    def agent_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--agent-id",
            "--agent",
            dest="agent_id",
            type=_agent_id,
            required=True,
            metavar="ID",
            help="the agent's id: 1..32 letters, digits, '_' or '-'",
        )

    keygen = verbs.add_parser("keygen", help="a new key pair for an agent's handheld")
    agent_option(keygen)
    keygen.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for <id>.key/.pub"
    )
    keygen.set_defaults(handler=_keygen)
    add = verbs.add_parser("add", help="register or update an agent")
    agent_option(add)
    add.add_argument(
        "--public-key", type=Path, required=True, metavar="FILE", help="the agent's <id>.pub"
    )
    add.add_argument("--pin", action="store_true", help="ask for the station PIN (twice)")
    add.add_argument(
        "--valid-until",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="last day it is valid (default: no end)",
    )
    registry_options(add)
    add.set_defaults(handler=_add)
    set_pin = verbs.add_parser("set-pin", help="add an agent or change their station PIN")
    agent_option(set_pin)
    set_pin.add_argument(
        "--pin-stdin", action="store_true", help="read the PIN from one line of standard input"
    )
    registry_options(set_pin)
    set_pin.set_defaults(handler=_set_pin)
    listing = verbs.add_parser("list", help="registered agents (no keys, no PINs)")
    registry_options(listing)
    listing.set_defaults(handler=_list)
    remove = verbs.add_parser("remove", help="unregister an agent")
    agent_option(remove)
    registry_options(remove)
    remove.set_defaults(handler=_remove)
    sign = verbs.add_parser("sign", help="print one signed action (as the handheld would)")
    sign.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="the agent's <id>.key"
    )
    agent_option(sign)
    sign.add_argument(
        "--command",
        choices=[c.value for c in AgentCommand],
        required=True,
        help="the action: open the gate, cancel the current traveller, or opt the traveller out",
    )
    sign.add_argument(
        "--scope",
        required=True,
        metavar="DEVICE_ID|AIRPORT",
        help="the gate's device id (RELEASE, CANCEL; e.g. gate-lax-b42), or for OPTOUT its airport",
    )
    sign.set_defaults(handler=_sign)


__all__ = ["AgentsCommandError", "add_agents_commands"]

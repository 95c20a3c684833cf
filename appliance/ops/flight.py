"""``gatectl flight show | set``: the flight of the day, changed without re-provisioning.

``set`` edits only ``[flight]`` of the configuration file (the other keys, comments and
sections stay; the diff is shown, the old file kept as ``<name>.bak-<UTC time>``; the
result must pass the checks ``gatectl run`` makes), then asks the running service to
reload (``SIGHUP`` to the pid that holds the unit's instance lock, what ``systemctl
reload gate-appliance`` also sends) and waits until its status shows the new flight.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from appliance.errors import ConfigError, ProvisionError
from appliance.ops.provision import backup_path, check_answer, config_diff
from appliance.service.config import check_service_config, load_config, parse_config
from appliance.service.instance import lock_holder
from appliance.service.status import read_status
from gate_contract.documents import parse_toml
from gate_contract.files import write_private

# [flight] key -> the provisioning answer that checks it
FLIGHT_KEYS = {
    "carrier": "carrier",
    "number": "flight",
    "date": "date",
    "airport": "airport",
    "gate": "gate",
}
APPLY_WAIT_S = 15.0


def show_flight(config_path: Path, out: Callable[[str], object] = print) -> int:
    config = load_config(config_path)
    f = config.flight
    gate = f" gate {f.gate}" if f.gate else ""
    out(f"{f.carrier}{f.flight_number} {f.date} from {f.departure_airport}{gate}")
    return 0


def set_flight(
    config_path: Path,
    changes: dict[str, str],
    *,
    dry_run: bool = False,
    reload: bool = True,
    out: Callable[[str], object] = print,
    wait_s: float = APPLY_WAIT_S,
) -> int:
    """Change ``[flight]`` keys (``number``, ``date`` ...); 0 when done (and applied)."""
    import tomlkit

    errors = []
    for key, value in changes.items():
        try:
            changes[key] = check_answer(FLIGHT_KEYS[key], value)
        except ValueError as exc:
            errors.append(f"--{key} = {value!r}: {exc}")
    if errors:
        raise ProvisionError("; ".join(errors))
    try:
        current = config_path.read_bytes().decode("utf-8")
        document = tomlkit.parse(current)
    except (UnicodeDecodeError, tomlkit.exceptions.ParseError, RecursionError) as exc:
        raise ConfigError(f"{config_path} is not valid TOML: {exc}") from exc
    table = document.get("flight")
    if table is None:
        raise ProvisionError(f"{config_path} has no [flight] section; run `gatectl provision`")
    if not isinstance(table, dict):
        raise ConfigError(f"{config_path}: flight must be a table ([flight]), not {table!r}")
    for key, value in changes.items():
        if table.get(key) != value:
            table[key] = value
    text = tomlkit.dumps(document)
    config = parse_config(parse_toml(text), config_path.parent)
    check_service_config(config)
    if text == current:
        out(f"unchanged: {config.flight.name} is the flight already")
        return 0
    for line in config_diff(config_path, current, text):
        out(line)
    if dry_run:
        out("dry run: nothing was written")
        return 0
    backup = backup_path(config_path)
    write_private(backup, current.encode())
    write_private(config_path, text.encode())
    out(f"{config_path} now boards {config.flight.name} (the old file kept as {backup.name})")
    if not reload:
        return 0
    holder = lock_holder(config.lock_path)
    if holder is None or not isinstance(holder.get("pid"), int):
        out("the gate service is not running: it boards this flight when it starts")
        return 0
    pid = holder["pid"]
    try:
        os.kill(pid, signal.SIGHUP)
    except PermissionError:
        out(f"not allowed to signal the service (pid {pid}): `systemctl reload gate-appliance`")
        return 1
    except ProcessLookupError:
        out("the gate service is not running: it boards this flight when it starts")
        return 0
    if _applied(config.status_path, config.flight.flight_number, config.flight.date, wait_s):
        out(f"the gate service (pid {pid}) boards {config.flight.name} from the next traveller")
        return 0
    out(f"the gate service (pid {pid}) was asked to reload but does not show the new flight"
        " yet: see `gatectl status` and its journal")  # fmt: skip
    return 1


def _applied(status_path: Path, number: str, date: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            flight = read_status(status_path).get("flight") or {}
        except (OSError, ValueError):
            flight = {}
        if flight.get("number") == number and flight.get("date") == date:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


__all__ = ["APPLY_WAIT_S", "FLIGHT_KEYS", "set_flight", "show_flight"]

"""``gatectl firmware deploy``: put the gate firmware and its relay key on a Pico, and check it.

One ``mpremote`` session (MicroPython's own board tool) does, in this order:

1. remove ``/main.py`` and the old firmware modules, so a deploy cut short leaves a board
   that does not start half a firmware (the relay pin then stays low: fail secure);
2. copy the firmware compiled by ``mpy-cross`` for the RP2040 (``.mpy``);
3. copy the relay key from a 0600 file in a private staging folder (in memory, under
   ``/dev/shm``, where there is one; overwritten before it is deleted): the key is
   never on a command line and never printed;
4. set the relay counter store with the board's own ``CounterStore`` to a new counter
   epoch, counter 0: the epoch is one above the board's, and at least the host's
   wall-clock second (see :func:`epoch_floor`), so no pulse signed before (every tag
   names its epoch) is ever valid again, even on a board whose flash was wiped; this is
   also how a used-up, poisoned or unreadable counter store is recovered;
5. write ``/main.py`` and reset the board.

Then the board must answer the protocol's greeting (HELLO, and a STATUS that verifies
under the key: a board holding another key fails here), report the epoch just set, and
reject a correctly signed pulse with its (stale) counter as REJECTED_STALE; nothing in
the check can open the relay. Every step has a timeout, so a wedged
board (for instance one whose firmware owns the USB port and ignores Ctrl-C) gives a
clear error instead of a hung technician. ``--dry-run`` builds and stages everything
and prints the plan without touching the port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import FirmwareDeployError

TRANSPORTS = ("usb", "uart")
MPREMOTE_TIMEOUT_S = 120.0
VERIFY_TIMEOUT_S = 20.0
# A host clock before this is not set (a Pi without a real-time clock before NTP): its
# second would be a useless epoch floor.
EARLIEST_PLAUSIBLE_CLOCK = 1_735_689_600  # 2025-01-01T00:00:00Z
EPOCH_MAX = 0xFFFFFFFE  # 0xFFFFFFFF marks a locked store on the board
COUNTER_MARK = "GATE-COUNTER"

MAIN_PY = """\
# Written by `gatectl firmware deploy`: the gate firmware's entry point.
from firmware_bridge.mcu.pico_main import main

main(transport={transport!r})
"""

# Runs on the board first: nothing half-deployed may start at the next boot.
PREPARE_PY = """\
import os
def _rm(path):
    try:
        os.remove(path)
    except OSError:
        pass
_rm('/main.py')
for _dir in ('/firmware_bridge', '/firmware_bridge/mcu'):
    try:
        os.mkdir(_dir)
    except OSError:
        pass
    for _name in os.listdir(_dir):
        if _name.endswith('.py') or _name.endswith('.mpy'):
            _rm(_dir + '/' + _name)  # a stale .py would shadow the new .mpy
"""

# Runs on the board after the firmware is copied, with the board's own counter code: a
# new epoch above the board's (and at least the floor), counter 0, in both slots.
COUNTER_PY = """\
from firmware_bridge.mcu.pico_main import COUNTER_LOCKED, CounterStore
_store = CounterStore('/')
_held = _store.load()  # fresh flash: both slots written as (0, 0)
_locked = _held == COUNTER_LOCKED
_epoch = {floor} if _locked else max(_held[0] + 1, {floor})
if _epoch > {epoch_max}:
    raise ValueError('relay counter epochs used up')
_store.store(_epoch, 0)
_store.store(_epoch, 0)
print('{mark}', _epoch, 'locked' if _locked else '%d/%d' % _held)
"""


def epoch_floor(now: float | None = None) -> int:
    """The host's wall-clock second: the lowest counter epoch a deploy leaves on a board.

    Epochs move on by one per ``gatectl provision --rotate`` and to at least the clock's
    second per deploy, so a board whose flash was wiped still gets an epoch above every
    one it had, unless the gate was rotated more than once a second since the previous
    deploy, which no technician does.
    """
    second = int(time.time() if now is None else now)
    if second < EARLIEST_PLAUSIBLE_CLOCK:
        raise FirmwareDeployError(
            f"the host clock says {time.strftime('%Y-%m-%d', time.gmtime(second))}: set "
            "the time (NTP) before deploying, the relay counter is based on it"
        )
    return min(second, EPOCH_MAX)


@dataclass
class DeployResult:
    """What a deploy did, for the technician and for ``--json``."""

    port: str
    transport: str
    dry_run: bool
    files: dict[str, int] = field(default_factory=dict)  # board path -> bytes
    epoch: int | None = None  # the relay counter epoch set (its counter is 0)
    counter_before: str | None = None  # "epoch/counter" the board held, or "locked"
    greeting: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def default_mpremote() -> list[str]:
    """mpremote from this environment (``gate-appliance[firmware]``), or on the PATH."""
    if importlib.util.find_spec("mpremote") is not None:
        return [sys.executable, "-m", "mpremote"]
    found = shutil.which("mpremote")
    if found:
        return [found]
    raise FirmwareDeployError(
        "mpremote is not installed: pip install 'gate-appliance[firmware]' (or pass --mpremote)"
    )


@dataclass
class Deployer:
    """One deploy to the board on ``port``; see the module docstring for the steps."""

    port: str
    key: bytes
    transport: str = "usb"
    link_port: str | None = None  # where the firmware answers; the USB port by default
    mpremote: list[str] = field(default_factory=list)
    mpremote_timeout_s: float = MPREMOTE_TIMEOUT_S
    verify_timeout_s: float = VERIFY_TIMEOUT_S
    out: Callable[[str], None] = print

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise FirmwareDeployError(f"transport must be one of {', '.join(TRANSPORTS)}")
        if self.transport == "uart" and not self.link_port:
            raise FirmwareDeployError(
                "with the UART transport the firmware answers on the host's UART, not on "
                f"{self.port}: give --link-port (e.g. /dev/serial0)"
            )
        if len(self.key) < 16:
            raise FirmwareDeployError("the relay key must be at least 16 bytes")

    def run(self, *, dry_run: bool = False) -> DeployResult:
        from firmware_bridge.tools.firmware_build import FirmwareBuildError, compile_firmware

        result = DeployResult(self.port, self.transport, dry_run)
        floor = epoch_floor()
        with tempfile.TemporaryDirectory(prefix="gate-firmware-", dir=_memory_tmp()) as tmp:
            stage = Path(tmp)
            os.chmod(stage, 0o700)
            try:
                modules = compile_firmware(stage / "build")
            except FirmwareBuildError as exc:
                raise FirmwareDeployError(str(exc)) from exc
            copies = [(m, "/" + str(m.relative_to(stage / "build"))) for m in modules]
            key_file = stage / "gate_key.hex"
            key_text = (self.key.hex() + "\n").encode()
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key_text)
            try:
                output = self._stage_and_send(result, copies, key_file, stage, floor, dry_run)
            finally:
                key_file.write_bytes(bytes(len(key_text)))  # overwritten before it is deleted
        if dry_run:
            return result
        result.epoch, result.counter_before = _counter_from(output)
        if result.epoch is None:
            raise FirmwareDeployError(
                "the board did not confirm its relay counter; mpremote said: "
                + " | ".join(output.strip().splitlines()[-3:])
            )
        self.out(f"relay counter: epoch {result.epoch}, counter 0 (was {result.counter_before})")
        result.greeting = self._verify(result.epoch)
        return result

    # ------------------------------------------------------------------ mpremote

    def _stage_and_send(
        self,
        result: DeployResult,
        copies: list[tuple[Path, str]],
        key_file: Path,
        stage: Path,
        floor: int,
        dry_run: bool,
    ) -> str:
        """Write main.py, print the plan and (unless a dry run) run it; -> mpremote's output."""
        main_py = stage / "main.py"
        main_py.write_text(MAIN_PY.format(transport=self.transport))
        result.files = {inside: path.stat().st_size for path, inside in copies}
        steps = self._steps(copies, key_file, main_py, floor)
        command = [*(self.mpremote or default_mpremote()), "connect", self.port]
        self.out(f"plan: one mpremote session on {self.port} ({shlex.join(command)})")
        for number, (what, args) in enumerate(steps, 1):
            command += (["+"] if number > 1 else []) + args
            self.out(f"{number:>3}. {what}")
        self.out(f"{len(steps) + 1:>3}. check the greeting on {self.link_port or self.port}")
        if dry_run:
            self.out("dry run: nothing was sent to the board")
            return ""
        return self._run_mpremote(command)

    def _steps(
        self, copies: list[tuple[Path, str]], key_file: Path, main_py: Path, floor: int
    ) -> list[tuple[str, list[str]]]:
        """(what it does, mpremote arguments) for each step of the session, in order."""
        steps = [("remove /main.py and the old firmware modules", ["exec", PREPARE_PY])]
        for local, inside in copies:
            size = local.stat().st_size
            steps.append((f"copy {inside} ({size} bytes, mpy-cross armv6m)", _cp(local, inside)))
        key_step = "copy the relay key to /gate_key.hex (from a 0600 file)"
        steps.append((key_step, _cp(key_file, "/gate_key.hex")))
        counter = COUNTER_PY.format(floor=floor, epoch_max=EPOCH_MAX, mark=COUNTER_MARK)
        step = f"relay counter: new epoch max(the board's + 1, {floor}), counter 0"
        steps.append((step, ["exec", counter]))
        steps.append((f"write /main.py (transport {self.transport})", _cp(main_py, "/main.py")))
        steps.append(("reset the board", ["reset"]))
        return steps

    def _run_mpremote(self, command: list[str]) -> str:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group, to end it whole on timeout
            )
        except OSError as exc:
            raise FirmwareDeployError(f"cannot run mpremote ({command[0]}): {exc}") from exc
        try:
            output, _ = proc.communicate(timeout=self.mpremote_timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started, by its id
            proc.communicate()
            raise FirmwareDeployError(
                f"the board on {self.port} did not finish the deploy within "
                f"{self.mpremote_timeout_s:g} s. If its firmware uses the USB transport it "
                "ignores Ctrl-C, so mpremote cannot stop it: power the board up with the "
                "SERVICE jumper on (GP22 to GND) and deploy again. Also check that no "
                "other program (the gate service) holds the port."
            ) from None
        if proc.returncode != 0:
            tail = " | ".join(line for line in output.strip().splitlines()[-3:] if line)
            raise FirmwareDeployError(
                f"mpremote failed on {self.port} (exit {proc.returncode}): {tail}. The "
                "board is left without /main.py (it does not start the gate); fix the "
                "cause and deploy again."
            )
        return output

    # -------------------------------------------------------------------- verify

    def _verify(self, epoch: int) -> dict[str, object]:
        port = self.link_port or self.port
        greeting = check_greeting(port, self.key, epoch, self.verify_timeout_s)
        self.out(
            f"greeting on {port}: session up, relay "
            f"{'OPEN' if greeting['relay_open'] else 'closed'}, epoch {greeting['epoch']} "
            f"counter {greeting['last_counter']}, key probe {greeting['key_probe']} (the "
            "board holds this key)"
        )
        return greeting


def check_greeting(port: str, key: bytes, epoch: int, timeout_s: float) -> dict[str, object]:
    """The firmware on ``port`` greets, holds ``key`` and the relay state (``epoch``, 0).

    Its STATUS must verify under ``key`` (another key: NotAuthentic). The key probe is
    then a correctly signed pulse with the board's own last counter: the firmware checks
    the tag before the counter, so it answers REJECTED_STALE when it holds ``key``; it
    can never open the relay.
    """
    from firmware_bridge.host import (
        Boot,
        CommandRejected,
        Event,
        GateLink,
        LinkError,
        NotAuthentic,
    )
    from firmware_bridge.protocol import LinkKeys, MsgType, Result, pack_relay_pulse

    deadline = time.monotonic() + timeout_s
    boots: list[Boot] = []

    def seen(event: Event) -> None:
        if isinstance(event, Boot):
            boots.append(event)

    while True:  # USB re-enumerates after the reset: the port comes back later
        link = GateLink(port, key, ack_timeout=0.5)
        link.on_event(seen)
        try:
            link.open()
            break
        except NotAuthentic as exc:
            link.close()
            raise FirmwareDeployError(
                f"the board holds a different relay key than the one deployed ({exc})"
            ) from exc
        except (LinkError, CommandRejected) as exc:
            link.close()
            if time.monotonic() >= deadline:
                raise FirmwareDeployError(
                    f"the board did not answer the gate protocol on {port} within "
                    f"{timeout_s:g} s after the reset ({exc}). If the SERVICE jumper is "
                    "still on, take it off and reset the board; otherwise its console "
                    "(mpremote connect PORT repl) shows why the firmware did not start"
                ) from exc
            time.sleep(0.5)
    try:
        status = link.request_status()
        stale = pack_relay_pulse(LinkKeys(key), status.epoch, 1, status.last_counter)
        probe = link.send_command(MsgType.RELAY_PULSE, stale)
    except (LinkError, CommandRejected) as exc:
        raise FirmwareDeployError(f"the board stopped answering on {port}: {exc}") from exc
    finally:
        link.close()
    if probe == Result.REJECTED_AUTH:
        raise FirmwareDeployError("the board holds a different relay key than the one deployed")
    if probe != Result.REJECTED_STALE:
        raise FirmwareDeployError(
            f"the key probe was answered {Result.name(probe)}, not REJECTED_STALE"
        )
    if (status.epoch, status.last_counter) != (epoch, 0):
        raise FirmwareDeployError(
            f"the board reports relay counter epoch {status.epoch} at {status.last_counter}, "
            f"not the epoch {epoch} at 0 just set: its counter store was not read"
        )
    return {
        "port": port,
        "relay_open": status.relay_open,
        "epoch": status.epoch,
        "last_counter": status.last_counter,
        "key_probe": Result.name(probe),
        "boot": boots[0].fw_version if boots else None,
    }


def _memory_tmp() -> str | None:
    """/dev/shm when there is one: the staged key then never touches a disk."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _cp(local: Path, inside: str) -> list[str]:
    return ["fs", "cp", str(local), ":" + inside]


def _counter_from(output: str) -> tuple[int | None, str | None]:
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == COUNTER_MARK and words[1].isdecimal():
            # the epoch set, and what the board held before
            return int(words[1]), words[2]
    return None, None


__all__ = [
    "COUNTER_MARK",
    "COUNTER_PY",
    "EARLIEST_PLAUSIBLE_CLOCK",
    "EPOCH_MAX",
    "MAIN_PY",
    "MPREMOTE_TIMEOUT_S",
    "PREPARE_PY",
    "TRANSPORTS",
    "VERIFY_TIMEOUT_S",
    "DeployResult",
    "Deployer",
    "FirmwareDeployError",
    "check_greeting",
    "default_mpremote",
    "epoch_floor",
]

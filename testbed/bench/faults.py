"""The fault matrix: each fault through real processes, the gate watched from outside.

Every row starts its own rig: ``gate-matcher serve`` in its own process behind a TCP
proxy of ours (``tcp_proxy``, for partitions), the gate firmware simulator in its own
process on a pty (reached through a symlink, so a restarted simulator is found again),
an MJPEG-over-HTTP camera of ours (``mjpeg_camera``), and ``gatectl run`` under
``strace -f`` (``testbed.native_writes``), biometric-first and unattended. The fault is
injected while a traveller stands at the gate; during it the simulator's relay and
indicator lines are recorded. When it is cleared another enrolled traveller steps up
(after a clear lane) until the gate grants: that is the recovery time. Afterwards the
service is stopped, every file its process tree wrote is checked for image bytes, and
``gatectl audit verify`` must pass on the ledger.

A row holds when the relay never opened during the fault, the service survived (a row
that kills the appliance restarts it as systemd would, and says so), no image reached
a file, the ledger verifies and a grant came back. The mid-pulse rows (MCU reboot,
appliance SIGTERM or SIGKILL while the relay is open) hold when the relay is closed
again within the pulse and the traveller of the pulse, stepping up again at the
recovered gate, is not let through twice. The key-change rows restart the matcher with
a new server certificate (same CA: the unit must come back by itself), a new sealing
key or a new signing key (the unit's pinned keys no longer fit: every traveller is
referred, the journal says to re-enrol, and recovery is timed from the technician's
step: stop the service, ``gatectl provision --rotate`` with a new token, start it).
``bench_faults`` returns the rows and a summary (``faults``, ``failed``,
``images_written``, ``ledger_verified``, ``max_recovery_s``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.custody.ledger import LedgerLine, read_lines
from appliance.service.status import read_status
from appliance.vision.camera import place_in_canvas
from gate_contract.files import write_private
from gate_contract.keys import PkiLayout, load_private, write_private_key, write_public_key
from gate_contract.progress import SILENT, Progress
from matching_service.dev_ca import DEV_DEVICE_ID, create_dev_pki
from testbed.bench.mjpeg_camera import MjpegCamera
from testbed.bench.tcp_proxy import TcpProxy
from testbed.native_writes import read_trace, strace_argv
from testbed.runs import wait_for
from testbed.testing import FLIGHT

START_TIMEOUT_S = 120.0  # model load, dlib, mTLS on a busy 2-core machine
GRANT_TIMEOUT_S = 90.0
DEADLINE_S = 2.0  # the appliance's per-call deadline in the rig
PARTITION_S = 20.0
CLOCK_CACHE_S = 1  # how often the faked appliance re-reads its clock offset
# libfaketime re-reads once the whole-second clock is more than CLOCK_CACHE_S past its
# last read: a step is seen up to 2 x CLOCK_CACHE_S later (measured: 0.04 to 1.97 s)
CLOCK_STEP_SEEN_S = 2 * CLOCK_CACHE_S + 0.2
LANE_CLEAR_S = 1.5  # an empty lane this long lets the unattended gate take the next one
TMPFS_BYTES = 64 * 1024
CLOCK_JUMP_S = 3600
PULSE_S = 0.5  # the rig's [serial] pulse_ms
PULSE_SLACK_S = 0.2  # the simulator reports its relay every 10 ms; our reader adds a little
_TAKING = ("READY", "CAPTURING")  # indicators of a gate that takes the next traveller
# Debian's libfaketime: the wall clock of the appliance's tree, read from a file each time
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
_GATE_MATCHER = [
    sys.executable,
    "-c",
    "import sys; from matching_service.cli import main; sys.exit(main())",
]


@dataclass
class FaultRow:
    fault: str
    relay_opened_during: bool = False
    indicator_during: list[str] = field(default_factory=list)
    gate_states_during: list[str] = field(default_factory=list)
    ledger_failure_during: str = ""  # what the status file said about the ledger, if not durable
    said_during: list[str] = field(default_factory=list)  # the journal's ERROR/WARNING lines
    pulse_s: float | None = None  # mid-pulse rows: how long the relay was open
    pulses: int = 0  # mid-pulse rows: relay openings from the fault to the recovery
    says_why: bool | None = None  # rows whose journal must say why (``MUST_SAY``): did it?
    service_survived: bool = True
    recovery_s: float | None = None
    ready_s: float | None = None  # from ``gatectl run`` to serving, before the fault
    images_written: int = 0
    ledger_verified: bool = False
    skipped: str = ""
    note: str = ""

    @property
    def failed(self) -> bool:
        if self.skipped:
            return False
        return (
            self.relay_opened_during
            or (self.pulse_s is not None and (self.pulse_s > PULSE_S + PULSE_SLACK_S))
            or self.pulses > 1
            or self.says_why is False
            or not self.service_survived
            or self.images_written > 0
            or not self.ledger_verified
            or self.recovery_s is None
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "failed": self.failed}


# --- the rig --------------------------------------------------------------------------------


class SimulatorProcess:
    """``python -m firmware_bridge.simulator`` in its own process; its relay lines kept."""

    def __init__(self, key_hex: str, link: Path) -> None:
        self.events: list[tuple[float, str, str]] = []  # (time, relay, indicator)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "firmware_bridge.simulator"],
            env={**os.environ, "GATE_RELAY_KEY": key_hex},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        port = self.process.stdout.readline().strip()
        if not port:
            raise RuntimeError("the simulator printed no port")
        tmp = link.with_name(link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(port)
        tmp.replace(link)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            parts = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if "relay" in parts:
                self.events.append((time.monotonic(), parts["relay"], parts.get("indicator", "")))

    def indicator(self) -> str:
        return self.events[-1][2] if self.events else ""

    def opened_since(self, at: float) -> float | None:
        return next((t for t, relay, _ in self.events if t >= at and relay == "OPEN"), None)

    def referred_since(self, at: float) -> bool:
        """Did the gate send someone to the agent since ``at``?"""
        return any(t >= at and indicator == "SEE_AGENT" for t, _, indicator in self.events)

    def closed_since(self, at: float) -> float | None:
        return next((t for t, relay, _ in self.events if t >= at and relay != "OPEN"), None)

    def openings(self, start: float, end: float) -> int:
        return sum(1 for t, relay, _ in self.events if start <= t < end and relay == "OPEN")

    def reboot(self) -> None:
        self.process.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


class Rig:
    """One row's processes and files."""

    def __init__(self, work: Path, gallery_db: Path, pki_root: Path, photos: dict) -> None:
        self.work = work
        self.db = gallery_db
        # each row its own copies: a key-change row changes the service's keys, and its
        # technician re-enrols the unit (``gatectl provision --rotate``)
        self.pki = work / "service-pki"
        shutil.copytree(pki_root, self.pki)
        self.unit_pki = work / "unit-pki"
        self.unit_pki.mkdir(mode=0o700)
        shutil.copy2(pki_root / "ca.pem", self.unit_pki / "ca.pem")
        shutil.copytree(pki_root / "device", self.unit_pki / "device")
        self.enroll_port = _free_port()
        self.matcher: subprocess.Popen | None = None
        self.matcher_port = _free_port()
        self.proxy = TcpProxy(("127.0.0.1", self.matcher_port))
        canvas = (1280, 720)
        self.camera = MjpegCamera(
            {
                "nobody": np.full((canvas[1], canvas[0], 3), 118, np.uint8),
                **{name: place_in_canvas(image, canvas) for name, image in photos.items()},
            }
        )
        self.key_hex = os.urandom(32).hex()
        self.deadline_s = DEADLINE_S
        self.mcu_link = work / "mcu-tty"
        self.simulator: SimulatorProcess | None = None
        self.appliance: subprocess.Popen | None = None
        self.traces: list[Path] = []
        self.ledger = work / "state" / "purge-ledger.jsonl"
        self.status = work / "status.json"
        self.mount: Path | None = None
        self.clock_file: Path | None = None  # set: the appliance runs under libfaketime
        self.exits: list[int] = []  # exit codes of appliance runs that ended by themselves
        (work / "state").mkdir(parents=True, exist_ok=True)

    # processes
    def start_matcher(self) -> None:
        self.matcher = subprocess.Popen(
            [*_GATE_MATCHER, "--db", str(self.db), "serve",
             "--pki", str(self.pki), "--address", f"127.0.0.1:{self.matcher_port}",
             "--enroll-address", f"127.0.0.1:{self.enroll_port}", "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=(self.work / "matcher.log").open("ab"),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def stop_matcher(self) -> None:
        assert self.matcher is not None
        self.matcher.kill()
        self.matcher.wait(10)

    def restart_matcher(self) -> bool:
        """Start the matcher again; True once it listens."""
        self.start_matcher()
        return wait_for(self.matcher_listening, START_TIMEOUT_S, 0.1)

    def matcher_listening(self) -> bool:
        import socket

        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.matcher_port), timeout=0.5),
        ):
            return True
        return False

    def start_simulator(self) -> None:
        self.simulator = SimulatorProcess(self.key_hex, self.mcu_link)

    def ledger_on_tmpfs(self) -> str:
        """Put the ledger's folder on a small tmpfs of its own; '' or why it cannot be."""
        mount = self.work / "state"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(mount)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            return f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})"
        self.mount = mount
        return ""

    def write_config(self) -> Path:
        """The unit's configuration, written once (``gatectl provision`` may merge it)."""
        config = self.work / "gate.toml"
        if config.exists():
            return config
        write_private(self.work / "relay.key", self.key_hex.encode())
        config.write_text(
            f"""
[device]
id = "{DEV_DEVICE_ID}"
[camera]
source = "opencv:{self.camera.url}"
[vision]
steady_frames = 2
[matcher]
target = "localhost:{self.proxy.port}"
pki_dir = "{self.unit_pki}"
deadline_s = {self.deadline_s}
[serial]
port = "{self.mcu_link}"
relay_key_file = "relay.key"
pulse_ms = {round(PULSE_S * 1000)}
[flight]
carrier = "{FLIGHT.carrier}"
number = "{FLIGHT.flight_number}"
date = "{FLIGHT.date}"
airport = "{FLIGHT.departure_airport}"
gate = "{FLIGHT.gate}"
[ledger]
path = "{self.ledger}"
[boarding_log]
path = "{self.work / "boarding-log.jsonl"}"
[capture]
mode = "biometric_first"
[service]
status_path = "{self.status}"
stall_s = 30.0
"""
        )
        return config

    def start_appliance(self, *, traced: bool = True) -> None:
        """``gatectl run`` (under strace unless ``traced`` is False; each start its own trace)."""
        trace = self.work / f"strace-{len(self.traces)}.log"
        argv = [sys.executable, "-m", "appliance", "run", "--config", str(self.write_config())]
        self.appliance = subprocess.Popen(
            strace_argv(argv, trace) if traced else argv,
            stdout=subprocess.DEVNULL,
            stderr=(self.work / "appliance.log").open("ab"),
            stdin=subprocess.DEVNULL,
            cwd=self.work,
            env={**os.environ, "TMPDIR": str(self.work / "tmp"), **self._clock_env()},
        )
        (self.work / "tmp").mkdir(exist_ok=True)
        if traced:
            self.traces.append(trace)

    def fake_clock(self) -> str:
        """Run the appliance under libfaketime; '' or why it cannot be."""
        if not LIBFAKETIME.exists():
            return f"libfaketime missing ({LIBFAKETIME}; apt-get install faketime)"
        self.clock_file = self.work / "clock-offset"
        self.shift_clock(0)
        # the verify in flight outlives the step and its re-read, so its verdict is checked
        self.deadline_s = DEADLINE_S + CLOCK_STEP_SEEN_S + 1.0
        return ""

    def shift_clock(self, seconds: int) -> None:
        """Step the appliance's wall clock; it sees the step within ``CLOCK_STEP_SEEN_S``.
        Written whole and renamed, so libfaketime never reads a half-written offset."""
        assert self.clock_file is not None
        staged = self.clock_file.with_suffix(".new")
        staged.write_text(f"{seconds:+d}\n")
        staged.replace(self.clock_file)

    def _clock_env(self) -> dict[str, str]:
        if self.clock_file is None:
            return {}
        # Re-read every CLOCK_CACHE_S, not on every call: under strace each re-read is a traced
        # openat, and per call they made start-up slow enough to time out on CI.
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.clock_file),
            "FAKETIME_CACHE_DURATION": str(CLOCK_CACHE_S),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # only the wall clock jumps (0.9.10's name)
            "DONT_FAKE_MONOTONIC": "1",  # older releases' name
        }

    def appliance_pid(self) -> int | None:
        """The appliance's Python process (strace's child when traced)."""
        if self.appliance is None or self.appliance.poll() is not None:
            return None
        if not self.traces or self.appliance.args[0] == sys.executable:
            return self.appliance.pid
        children = Path(f"/proc/{self.appliance.pid}/task/{self.appliance.pid}/children")
        with contextlib.suppress(OSError):
            pids = children.read_text().split()
            return int(pids[0]) if pids else None
        return None

    def signal_appliance(self, signum: int) -> None:
        pid = self.appliance_pid()
        if pid is not None:
            os.kill(pid, signum)
        assert self.appliance is not None
        self.appliance.wait(60)

    # observation
    def read_status(self) -> dict:
        try:
            return read_status(self.status)
        except (OSError, ValueError):
            return {}

    def gate_state(self) -> str:
        return str(self.read_status().get("state", ""))

    def serving(self) -> bool:
        status = self.read_status()
        return status.get("service") == "serving" and status.get("state") == "ready"

    def wait_serving(self, timeout: float = START_TIMEOUT_S) -> bool:
        return wait_for(self.serving, timeout, 0.1)

    def why_not_serving(self) -> str:
        """For a row's note: the exit code or the status, and the journal's last line."""
        assert self.appliance is not None
        code = self.appliance.poll()
        status = self.read_status()
        where = (
            f"gatectl run exited {code}"
            if code is not None
            else f"status {status.get('service', 'absent')}/{status.get('state', '-')}"
        )
        journal: list[str] = []
        with contextlib.suppress(OSError):
            journal = (self.work / "appliance.log").read_text(errors="replace").splitlines()
        said = [line for line in journal if "accelerator_registry" not in line]
        return f"{where}; last said: {said[-1] if said else 'nothing'}"

    def present(self, traveller: str) -> None:
        self.camera.show(traveller)

    def next_grant(self, since: float, traveller: str, timeout: float = GRANT_TIMEOUT_S):
        """Clear lane, then ``traveller``, until the relay opens; seconds from ``since``."""
        assert self.simulator is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.restart_if_exited()
            self.present("nobody")  # the lane clears: the indicator leaves "see agent"
            time.sleep(LANE_CLEAR_S)
            wait_for(lambda: self.simulator.indicator() in _TAKING, LANE_CLEAR_S * 4, 0.05)
            presented = time.monotonic()
            self.present(traveller)
            # Granted, or referred (the traveller goes to the agent; the next steps up).
            wait_for(lambda at=presented: self._granted_or_referred(since, at), 8.0, 0.05)
            if self.simulator.opened_since(since) is not None:
                self.present("nobody")
                return round(self.simulator.opened_since(since) - since, 2)
        self.present("nobody")
        return None

    def _granted_or_referred(self, since: float, presented: float) -> bool:
        assert self.simulator is not None
        simulator = self.simulator
        return simulator.opened_since(since) is not None or simulator.referred_since(presented)

    def restart_if_exited(self) -> None:
        """What systemd's ``Restart=on-failure`` does for a service that exited."""
        if self.appliance is not None and self.appliance.poll() is not None:
            self.exits.append(self.appliance.returncode)
            self.start_appliance()

    def stop(self) -> None:
        if self.appliance is not None and self.appliance.poll() is None:
            with contextlib.suppress(Exception):
                self.signal_appliance(signal.SIGTERM)
        for process in (self.appliance, self.matcher):
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(10)
        if self.simulator is not None:
            self.simulator.kill()
        self.proxy.close()
        self.camera.close()

    def unmount(self) -> None:
        if self.mount is not None:
            subprocess.run(["umount", "-l", str(self.mount)], check=False)
            self.mount = None

    def images_written(self) -> int:
        images = 0
        for trace in self.traces:
            if trace.exists():
                images += len(read_trace(trace).image_files())
        return images

    def ledger_verifies(self) -> bool:
        done = subprocess.run(
            [sys.executable, "-m", "appliance", "audit", "verify", "--ledger", str(self.ledger)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        (self.work / "audit-verify.txt").write_text(done.stdout + done.stderr)
        return done.returncode == 0

    def journal_size(self) -> int:
        with contextlib.suppress(OSError):
            return (self.work / "appliance.log").stat().st_size
        return 0

    def said_since(self, offset: int, limit: int = 4) -> list[str]:
        """The appliance's first distinct ERROR and WARNING lines after ``offset``."""
        said: list[str] = []
        with contextlib.suppress(OSError), (self.work / "appliance.log").open("rb") as log:
            log.seek(offset)
            for raw in log:
                line = raw.decode("utf-8", "replace").split(" [gate=")[0].strip()
                if line.startswith(("ERROR", "WARNING")) and "no agents are registered" not in (
                    line
                ):
                    if line not in said:
                        said.append(line[:240])
                    if len(said) >= limit:
                        break
        return said

    def ledger_reasons(self) -> list[str]:
        """The reason of every record; a torn or damaged line (this bench makes them) has
        none."""
        with contextlib.suppress(OSError):
            return [
                line.entry.get("reason", "") if line.entry else ""
                for line in read_lines(self.ledger)
                if isinstance(line, LedgerLine)
            ]
        return []


# --- the service's keys, renewed ------------------------------------------------------------


def new_server_certificate(layout: PkiLayout) -> None:
    """A new TLS key and certificate for the service, signed by the same CA."""
    ca_cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(load_private(layout.ca_key), hashes.SHA256())
    )
    write_private_key(layout.server_key, key)
    layout.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def new_sealing_key(layout: PkiLayout) -> None:
    """A new X25519 key the service opens captures with (the unit still seals to the old)."""
    key = X25519PrivateKey.generate()
    write_private_key(layout.sealing_key, key)
    write_public_key(layout.sealing_public, key.public_key())


def new_signing_key(layout: PkiLayout) -> None:
    """A new Ed25519 key the service signs verdicts with (the unit still checks the old)."""
    key = Ed25519PrivateKey.generate()
    write_private_key(layout.signing_key, key)
    write_public_key(layout.signing_public, key.public_key())


# --- the faults -----------------------------------------------------------------------------


def _during(rig: Rig, seconds: float, row: FaultRow) -> None:
    """Hold the fault ``seconds`` with the first traveller at the gate; note the states."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = rig.read_status()
        state = str(status.get("state", ""))
        if state and state not in row.gate_states_during:
            row.gate_states_during.append(state)
        ledger = status.get("ledger") or {}
        if ledger.get("durable") is False and not row.ledger_failure_during:
            row.ledger_failure_during = str(ledger.get("failure") or "not durable")
        time.sleep(0.1)


def _wait_verifying(rig: Rig, timeout: float = 20.0) -> bool:
    return wait_for(lambda: rig.gate_state() == "verifying", timeout, 0.02)


def _fault_matcher_sigstop(rig: Rig, row: FaultRow) -> Callable[[], None]:
    assert rig.matcher is not None
    rig.matcher.send_signal(signal.SIGSTOP)
    rig.present("biden")
    _during(rig, DEADLINE_S + 4, row)
    return lambda: rig.matcher.send_signal(signal.SIGCONT)


def _fault_matcher_sigkill_mid_verify(rig: Rig, row: FaultRow) -> Callable[[], None]:
    assert rig.matcher is not None
    rig.matcher.send_signal(signal.SIGSTOP)  # holds the verify in flight
    rig.present("biden")
    if not _wait_verifying(rig):
        row.note = "no verify was seen in flight"
    rig.matcher.kill()
    rig.matcher.wait(10)
    _during(rig, 3.0, row)
    return rig.start_matcher


def _fault_partition(rig: Rig, row: FaultRow) -> Callable[[], None]:
    rig.proxy.partition()
    rig.present("biden")
    _during(rig, PARTITION_S, row)
    return rig.proxy.heal


def _fault_matcher_absent_at_start(rig: Rig, row: FaultRow) -> Callable[[], None]:
    rig.present("biden")
    _during(rig, 8.0, row)

    return rig.start_matcher


def _kill_appliance_mid_verify(signum: int):
    def fault(rig: Rig, row: FaultRow) -> Callable[[], None]:
        assert rig.matcher is not None
        rig.matcher.send_signal(signal.SIGSTOP)
        rig.present("biden")
        if not _wait_verifying(rig):
            row.note = "no verify was seen in flight"
        rig.signal_appliance(signum)
        _during(rig, 1.0, row)

        def clear() -> None:
            rig.matcher.send_signal(signal.SIGCONT)
            rig.start_appliance()  # as systemd's Restart= would
            row.note = (row.note + "; " if row.note else "") + "restarted as systemd would"

        return clear

    return fault


def _fault_ledger_full(rig: Rig, row: FaultRow) -> Callable[[], None]:
    assert rig.mount is not None
    filler = rig.mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    rig.present("biden")
    _during(rig, 6.0, row)
    return filler.unlink


def _fault_simulator_restart(rig: Rig, row: FaultRow) -> Callable[[], None]:
    assert rig.simulator is not None
    old = rig.simulator
    old.kill()
    rig.present("biden")
    _during(rig, 3.0, row)

    def clear() -> None:
        rig.start_simulator()
        rig.simulator.events[:0] = old.events

    return clear


def _clock_jump(seconds: int):
    def fault(rig: Rig, row: FaultRow) -> Callable[[], None]:
        assert rig.matcher is not None
        rig.matcher.send_signal(signal.SIGSTOP)  # a verify in flight when the clock jumps
        rig.present("biden")
        if not _wait_verifying(rig):
            row.note = "no verify was seen in flight"
        rig.shift_clock(seconds)
        time.sleep(CLOCK_STEP_SEEN_S)  # the appliance sees the step before the verdict
        rig.matcher.send_signal(signal.SIGCONT)
        _during(rig, 4.0, row)
        return lambda: rig.shift_clock(0)

    return fault


def _camera(mode: str):
    def fault(rig: Rig, row: FaultRow) -> Callable[[], None]:
        if mode == "refuse":
            rig.camera.refuse()
        else:
            rig.camera.show(mode)
        _during(rig, 8.0, row)
        return rig.camera.serve

    return fault


def _fault_new_server_certificate(rig: Rig, row: FaultRow) -> Callable[[], None]:
    """The matcher is restarted with a new server certificate from the same CA: the unit
    pins the CA, not the certificate, so it must come back by itself."""
    rig.stop_matcher()
    new_server_certificate(PkiLayout(rig.pki))
    rig.present("biden")
    _during(rig, 3.0, row)
    return rig.restart_matcher


def _key_change(renew: Callable[[PkiLayout], None]):
    """The matcher comes back with a new sealing or signing key: the keys the unit pinned
    at enrollment no longer match, so every traveller must be referred (no verdict it cannot
    verify, no capture the service cannot open) and the journal must say why, until the
    technician re-enrols the unit (``gatectl provision --rotate`` with a new token)."""

    def fault(rig: Rig, row: FaultRow) -> Callable[[], None]:
        rig.stop_matcher()
        renew(PkiLayout(rig.pki))
        if not rig.restart_matcher():
            row.note = "gate-matcher serve did not come back"
        for traveller in ("biden", "obama"):  # two travellers step up; both are referred
            rig.present("nobody")
            _during(rig, LANE_CLEAR_S * 2, row)
            rig.present(traveller)
            _during(rig, 5.0, row)
        rig.present("nobody")
        return lambda: _reprovision(rig, row)

    return fault


def _reprovision(rig: Rig, row: FaultRow) -> None:
    """The technician's step: stop the service, a new token from the matching service,
    ``gatectl provision --rotate`` with it, start the service."""
    rig.signal_appliance(signal.SIGTERM)  # systemctl stop gate-appliance
    token = subprocess.run(
        [*_GATE_MATCHER, "--db", str(rig.db), "issue-token", "--device-id", DEV_DEVICE_ID,
         "--airport", FLIGHT.departure_airport],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    (rig.work / "token").write_text(token.stdout.strip() + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "provision", "-y", "--rotate",
         "--config", str(rig.work / "gate.toml"), "--data-dir", str(rig.work / "state"),
         "--enroll", f"localhost:{rig.enroll_port}", "--ca-file", str(rig.pki / "ca.pem"),
         "--token-file", str(rig.work / "token")],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=rig.work,
    )  # fmt: skip
    (rig.work / "provision.txt").write_text(done.stdout + done.stderr)
    step = "recovery from the technician's step (stop, provision --rotate, start)"
    if done.returncode != 0:
        step += f"; provision FAILED: {(done.stderr or done.stdout).strip()[-300:]}"
    row.note = (row.note + "; " if row.note else "") + step
    rig.start_appliance()  # systemctl start gate-appliance


def _wait_pulse(rig: Rig, row: FaultRow, since: float) -> float | None:
    """The time the relay opened for the traveller in view, or None (noted)."""
    assert rig.simulator is not None
    if not wait_for(lambda: rig.simulator.opened_since(since) is not None, 30.0, 0.002):
        row.note = "no pulse was seen"
        return None
    return rig.simulator.opened_since(since)


def _pulse_length(rig: Rig, row: FaultRow, opened: float) -> None:
    assert rig.simulator is not None
    wait_for(lambda: rig.simulator.closed_since(opened) is not None, 5.0, 0.01)
    closed = rig.simulator.closed_since(opened)
    row.pulse_s = round(closed - opened, 3) if closed is not None else float("inf")


def _fault_mcu_reboot_mid_pulse(rig: Rig, row: FaultRow) -> Callable[[], None]:
    """The MCU resets while the relay is open: the relay falls closed with it, and the
    appliance, seeing a new BOOT, must not pulse again for the same traveller."""
    assert rig.simulator is not None
    since = time.monotonic()
    rig.present("biden")
    opened = _wait_pulse(rig, row, since)
    if opened is not None:
        rig.simulator.reboot()
        _pulse_length(rig, row, opened)
    _during(rig, 4.0, row)  # the traveller still in view while the link comes back
    return lambda: None


def _kill_appliance_mid_pulse(signum: int):
    def fault(rig: Rig, row: FaultRow) -> Callable[[], None]:
        since = time.monotonic()
        rig.present("biden")
        opened = _wait_pulse(rig, row, since)
        if opened is not None:
            rig.signal_appliance(signum)
            _pulse_length(rig, row, opened)
        _during(rig, 1.0, row)

        def clear() -> None:
            rig.start_appliance()  # as systemd's Restart= would
            row.note = (row.note + "; " if row.note else "") + "restarted as systemd would"

        return clear

    return fault


# what the journal must say (at ERROR or WARNING) during these faults
MUST_SAY = {
    "matcher_absent_at_start": "matching service unreachable",
    "clock_jump_forward_mid_verify": "refused: verdict issued outside the clock window",
    "clock_jump_back_mid_verify": "refused: verdict issued outside the clock window",
    "matcher_new_sealing_key": "re-enrolled (`gatectl provision --rotate`",
    "matcher_new_signing_key": "re-enrolled (`gatectl provision --rotate`",
}
MID_PULSE = ("mcu_reboot_mid_pulse", "appliance_sigterm_mid_pulse", "appliance_sigkill_mid_pulse")

FAULTS: dict[str, Callable[[Rig, FaultRow], Callable[[], None]]] = {
    "matcher_absent_at_start": _fault_matcher_absent_at_start,
    "matcher_sigkill_mid_verify": _fault_matcher_sigkill_mid_verify,
    "matcher_sigstop_past_deadline": _fault_matcher_sigstop,
    "matcher_new_server_certificate": _fault_new_server_certificate,
    "matcher_new_sealing_key": _key_change(new_sealing_key),
    "matcher_new_signing_key": _key_change(new_signing_key),
    "partition_20s": _fault_partition,
    "simulator_killed_restarted": _fault_simulator_restart,
    "camera_refusing": _camera("refuse"),
    "camera_hanging": _camera("hang"),
    "camera_garbage": _camera("garbage"),
    "appliance_sigterm_mid_verify": _kill_appliance_mid_verify(signal.SIGTERM),
    "appliance_sigkill_mid_verify": _kill_appliance_mid_verify(signal.SIGKILL),
    "mcu_reboot_mid_pulse": _fault_mcu_reboot_mid_pulse,
    "appliance_sigterm_mid_pulse": _kill_appliance_mid_pulse(signal.SIGTERM),
    "appliance_sigkill_mid_pulse": _kill_appliance_mid_pulse(signal.SIGKILL),
    "ledger_full_filesystem": _fault_ledger_full,
    "clock_jump_forward_mid_verify": _clock_jump(CLOCK_JUMP_S),
    "clock_jump_back_mid_verify": _clock_jump(-CLOCK_JUMP_S),
}


# --- running the matrix -----------------------------------------------------------------------


def _seen_again(rig: Rig, traveller: str) -> int:
    """The traveller of the pulse steps up again at the recovered gate: relay openings
    (none is right: boarded once, never pulsed twice)."""
    assert rig.simulator is not None
    rig.present("nobody")
    time.sleep(LANE_CLEAR_S)
    start = time.monotonic()
    rig.present(traveller)
    time.sleep(6.0)
    rig.present("nobody")
    return rig.simulator.openings(start, time.monotonic())


def _enroll(root: Path, photos_dir: Path) -> Path:
    db = root / "gallery.sqlite"
    manifest = root / "manifest.json"
    manifest.write_text(
        json.dumps(
            [
                {"traveller_id": "PAX-OB", "category": "us_citizen", "photo": "obama.jpg"},
                {"traveller_id": "PAX-BI", "category": "in_scope", "photo": "biden.jpg"},
            ]
        )
    )
    for name in ("obama.jpg", "biden.jpg"):
        shutil.copy(photos_dir / name, root / name)
    done = subprocess.run(
        [*_GATE_MATCHER, "--db", str(db), "enroll", "--flight",
         FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport,
         "--manifest", str(manifest)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"enrolment failed: {done.stderr[-500:]}")
    return db


def run_fault(name: str, root: Path, db: Path, pki: Path, photos: dict) -> FaultRow:
    row = FaultRow(name)
    work = root / name
    work.mkdir()
    rig = Rig(work, db, pki, photos)
    try:
        if name == "ledger_full_filesystem":
            row.skipped = rig.ledger_on_tmpfs()
        if name.startswith("clock_jump"):
            row.skipped = rig.fake_clock()
        if row.skipped:
            return row
        if name != "matcher_absent_at_start":
            rig.start_matcher()
            if not wait_for(rig.matcher_listening, START_TIMEOUT_S, 0.2):
                row.note = "gate-matcher serve never listened"
                return row
        rig.start_simulator()
        started = time.monotonic()
        rig.start_appliance()
        if name != "matcher_absent_at_start":
            if not rig.wait_serving():
                row.service_survived = False
                row.note = f"the service never became ready: {rig.why_not_serving()}"
                return row
            row.ready_s = round(time.monotonic() - started, 2)
        if name == "matcher_absent_at_start":
            time.sleep(2.0)
        assert rig.simulator is not None
        fault_started = time.monotonic()
        journal = rig.journal_size()
        clear = FAULTS[name](rig, row)
        assert rig.simulator is not None
        cleared = time.monotonic()
        openings = rig.simulator.openings(fault_started, cleared)
        # a mid-pulse row's own pulse is the fault's moment, not an opening during it
        row.relay_opened_during = openings > (1 if row.pulse_s is not None else 0)
        row.indicator_during = sorted(
            {ind for t, _, ind in rig.simulator.events if t >= fault_started}
        )
        row.said_during = rig.said_since(journal)
        if name in MUST_SAY:
            row.says_why = any(MUST_SAY[name] in line for line in row.said_during)
        clear()
        row.recovery_s = rig.next_grant(cleared, "obama")
        if name in MID_PULSE:
            row.pulses = openings + _seen_again(rig, "biden")
        if rig.exits:
            row.service_survived = False
            codes = ", ".join(str(code) for code in rig.exits)
            row.note = (row.note + "; " if row.note else "") + (
                f"gatectl run exited by itself (exit {codes}); restarted as systemd would"
            )
        if name == "appliance_sigkill_mid_verify" and "purged by process exit" not in (
            rig.ledger_reasons()
        ):
            row.note += "; no 'purged by process exit' record after the restart"
            row.ledger_verified = False
            return row
    finally:
        rig.stop()
        if not row.skipped:
            row.images_written = rig.images_written()
            if not row.note.endswith("after the restart"):
                row.ledger_verified = rig.ledger_verifies()
        rig.unmount()
    return row


@dataclass
class BenchInputs:
    """What every row shares: the development PKI, the enrolled gallery, the photos."""

    root: Path
    pki: Path
    db: Path
    photos: dict

    def run(self, name: str) -> FaultRow:
        return run_fault(name, self.root, self.db, self.pki, self.photos)


def prepare(root: Path, photos_dir: Path | None = None, *, traced: bool = True) -> BenchInputs:
    """Enrol the flight (two demo travellers) once; with ``traced`` raises
    ``TraceUnavailable`` when the process tree cannot be traced here (every row needs it)."""
    from gate_contract.paths import data_dir

    photos_dir = photos_dir or data_dir() / "demo"
    photos = {
        "obama": cv2.imread(str(photos_dir / "obama2.jpg")),
        "biden": cv2.imread(str(photos_dir / "biden.jpg")),
    }
    if any(p is None for p in photos.values()):
        raise FileNotFoundError(f"demo photos missing in {photos_dir} (run make setup)")
    if traced:
        strace_argv(["true"], root / "probe.log")
    pki = create_dev_pki(root / "pki").root
    return BenchInputs(root, pki, _enroll(root, photos_dir), photos)


def summarise(rows: list[FaultRow]) -> dict:
    ran = [r for r in rows if not r.skipped]
    recoveries = [r.recovery_s for r in ran if r.recovery_s is not None]
    return {
        "faults": len(ran),
        "skipped": len(rows) - len(ran),
        "failed": sum(r.failed for r in ran),
        "images_written": sum(r.images_written for r in ran),
        "ledger_verified": all(r.ledger_verified for r in ran),
        "max_recovery_s": max(recoveries) if recoveries else None,
        "rows": [r.as_dict() for r in rows],
    }


def bench_faults(
    faults: list[str] | None = None,
    photos_dir: Path | None = None,
    keep: Path | None = None,
    on_row: Callable[[FaultRow], object] | None = None,
    progress: Progress = SILENT,
) -> dict:
    """Run ``faults`` (default: all) and summarise; ``keep`` keeps the rows' folders;
    ``on_row`` is given each row as it is done."""
    names = faults or list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown faults: {', '.join(unknown)} (known: {', '.join(FAULTS)})")
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)  # where the technician asked for them
        except OSError as exc:
            raise ValueError(f"cannot keep the rows' files in {keep}: {exc.strerror}") from exc
    root = Path(tempfile.mkdtemp(prefix="gate-faults-", dir=keep))
    rows: list[FaultRow] = []
    try:
        inputs = prepare(root, photos_dir)
        with progress.bar("faults", total=len(names), unit="fault") as bar:
            for name in names:
                bar.set_postfix_str(name)
                rows.append(inputs.run(name))
                bar.update()
                if on_row is not None:
                    on_row(rows[-1])
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return summarise(rows)


def _free_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


__all__ = [
    "CLOCK_CACHE_S",
    "CLOCK_JUMP_S",
    "CLOCK_STEP_SEEN_S",
    "DEADLINE_S",
    "FAULTS",
    "GRANT_TIMEOUT_S",
    "LANE_CLEAR_S",
    "LIBFAKETIME",
    "MID_PULSE",
    "MUST_SAY",
    "PARTITION_S",
    "PULSE_S",
    "PULSE_SLACK_S",
    "START_TIMEOUT_S",
    "TMPFS_BYTES",
    "BenchInputs",
    "FaultRow",
    "Rig",
    "SimulatorProcess",
    "bench_faults",
    "new_sealing_key",
    "new_server_certificate",
    "new_signing_key",
    "prepare",
    "run_fault",
    "summarise",
]

"""The on-device service systemd runs (``gatectl run --config FILE``).

Builds the parts from the configuration, opens the flight session, starts the gate and
the barcode scanner, tells systemd it is ready, then runs the gate workflow
(:class:`appliance.workflow.GateWorkflow`, ``[capture] mode``) until stopped. On the way
out the scanner is silenced first (no agent action after that), then the gate is left
referring with the relay closed.

The serve loop captures only when the workflow has a traveller to capture: at a ready
gate in biometric-first mode, after a boarding pass that checks out (the gate is then
``capturing``; always so in pass-then-face), or to record an opt-out. Otherwise it waits
for a scan or a gate transition (an :class:`threading.Event` both set): for the pass in
pass-then-face, for the agent while the gate refers (``refer_to_agent``,
``manual_check``), for the door sensor or the passage window after a grant (MCU door
events reach the state machine through the link, see ``GateController``). Without a
scanner nobody can resolve a referral, so biometric-first then runs unattended: the
outcome is shown for ``result_hold_s``, and after a referral or an opt-out the gate
resets itself only once the lane is clear (no face for half a second), so that
traveller is not captured again.
Scans arrive on the scanner's thread (``[scanner] port``: a serial device, or ``stdin``
for a keyboard wedge) and go to ``GateWorkflow.scan`` as text; each traveller gets one
line in the boarding log (``[boarding_log] path``; never images).

Watchdog only while healthy: every frame the serve loop takes from the camera beats a
:class:`PipelineHeartbeat`. A :class:`WatchdogFeeder` thread sends ``WATCHDOG=1`` each
half ``WatchdogSec`` *only* while the last frame is younger than ``[service] stall_s``; a
stuck camera thread, a dead camera or a wedged serve loop all stop the frames, so the
pings stop and systemd restarts the service. While the loop waits (for a scan, the agent
or a passage) a live camera is still read and each frame zeroized at once, so it still
beats only if frames flow; a replay source is not consumed, the waiting loop beats
without a frame. While the gate is out of service (MCU link lost or faulted) nothing
beats, as before: unless the link returns within ``stall_s``, systemd restarts the
service, which greets the MCU again. The same thread publishes ``STATUS=`` lines
with the gate state and rewrites the status file ``gatectl status`` reads
(``appliance.status``; counters, links, last errors, never images).

A start-up failure (configuration, model, serial port, matcher, camera, scanner) logs
one line and returns a non-zero code so ``Restart=on-failure`` retries; so does a serial
scanner that fails while serving. A fault with one traveller never stops the loop
(``BoardingGate`` refers that traveller).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from appliance.custody.audit import default_key_path
from appliance.errors import CameraError, ConfigError, StartupError
from appliance.gate.machine import State
from appliance.gate.workflow import GateWorkflow, Mode
from appliance.pipeline.traveller import BoardingGate
from appliance.service import sd_notify
from appliance.service.config import (
    CameraSpec,
    GateConfig,
    ScannerConfig,
    check_service_config,
    load_config,
)
from appliance.service.hardening import harden_process
from appliance.service.log_filter import ImageDataFilter
from appliance.service.status import ErrorTail, StatusWriter
from appliance.shutdown import ShutdownRequested, install_shutdown_handler
from appliance.vision.camera import FrameSource, ReplaySource, live_camera
from appliance.vision.frame_pump import FramePump

log = logging.getLogger("gate.service")

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_CONFIG = 2
EXIT_MODEL = 3
EXIT_SERIAL = 4
EXIT_MATCHER = 5
EXIT_CAMERA = 6
EXIT_SCANNER = 7

SOURCE_ENDED = "camera delivered no frame"
# A live camera that gives no frame this many windows in a row: exit and let systemd restart.
MAX_CAMERA_FAILURES = 20
STATUS_REFRESH_S = 30.0  # the status file is rewritten at least this often (freshness)
IDLE_POLL_S = 0.2  # a waiting serve loop looks at stop / the heartbeat this often


def open_source(spec: CameraSpec) -> FrameSource:
    """The camera source the configuration names (raises CameraError).

    A live camera reconnects by itself after a drop-out and runs behind a frame pump,
    so the vision stage never blocks it: the newest frame wins, older ones are zeroized
    and counted as dropped.
    """
    if spec.kind == "replay":
        return ReplaySource(Path(spec.target), canvas=spec.size, repeat=spec.repeat)
    return FramePump(live_camera(spec.kind, spec.target, spec.size))


class PipelineHeartbeat:
    """When the capture pipeline last made progress (a frame reached the serve loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.frames = 0

    def beat(self) -> None:
        self._last = self._clock()
        self.frames += 1

    def alive(self) -> None:
        """Progress without a frame: the loop waits by design on a source it must not read."""
        self._last = self._clock()

    def age(self) -> float:
        return self._clock() - self._last


class _Beating:
    """The camera source as the serve loop sees it: every frame taken beats the heartbeat."""

    def __init__(self, source: FrameSource, heartbeat: PipelineHeartbeat) -> None:
        self.source = source
        self.heartbeat = heartbeat

    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", False))

    @property
    def dropped(self) -> int:
        return int(getattr(self.source, "dropped", 0))

    def read(self):
        frame = self.source.read()
        if frame is not None:
            self.heartbeat.beat()
        return frame

    def close(self) -> None:
        self.source.close()


class WatchdogFeeder:
    """Feeds the systemd watchdog only while the pipeline is healthy; publishes status.

    ``tick()`` is one round: decide health from the heartbeat's age, announce a change
    (log line, ``STATUS=``), send ``WATCHDOG=1`` if healthy and the watchdog is on, then
    call ``on_tick(healthy)``. ``start()`` runs ticks on a daemon thread every half
    ``WatchdogSec`` (or every ``period`` s when the watchdog is off, for the status).
    """

    def __init__(
        self,
        heartbeat: PipelineHeartbeat,
        stall_s: float,
        *,
        interval: float | None = None,
        period: float = 1.0,
        on_tick: Callable[[bool], None] | None = None,
        notify: Callable[[str], bool] = sd_notify.notify,
    ) -> None:
        self.heartbeat = heartbeat
        self.stall_s = stall_s
        self.interval = sd_notify.watchdog_interval() if interval is None else interval
        self.period = min(period, self.interval) if self.interval else period
        self.healthy = True
        self.pings = 0
        self._on_tick = on_tick
        self._notify = notify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        age = self.heartbeat.age()
        healthy = age <= self.stall_s
        if healthy != self.healthy:
            self.healthy = healthy
            if healthy:
                log.warning("capture pipeline recovered; watchdog pings resume")
                self._notify("STATUS=capture pipeline recovered")
            else:
                log.error(
                    "capture pipeline stalled: no frame for %.1f s (limit %.1f s);"
                    " watchdog pings stop",
                    age,
                    self.stall_s,
                )
                self._notify(f"STATUS=capture pipeline stalled: no frame for {age:.0f} s")
        if healthy and self.interval is not None:
            self._notify("WATCHDOG=1")
            self.pings += 1
        if self._on_tick is not None:
            try:
                self._on_tick(healthy)
            except Exception as exc:  # status publishing must not stop the watchdog
                log.warning("status update failed: %s", exc)
        return healthy

    def start(self) -> WatchdogFeeder:
        self._thread = threading.Thread(target=self._run, name="watchdog-feeder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.tick()
        while not self._stop.wait(self.period):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _RawLines:
    """Hands each scanned line over unparsed: ``GateWorkflow.scan`` parses it itself."""

    def parse(self, scan: str | bytes) -> str | bytes:
        return scan


class ScannerFeed:
    """The configured barcode scanner feeding ``on_line`` (one call per scan, in its thread).

    A serial scanner runs :class:`appliance.scanner.SerialScanner` (its thread, its
    terminator); ``port = "stdin"`` runs :class:`appliance.scanner.StreamScanner` over
    ``sys.stdin`` on a daemon thread. :meth:`close` returns only when no ``on_line`` call is
    in progress and none will start; a read blocked on stdin is left to the process exit.
    ``failed`` says why a serial scanner stopped (the service exits so systemd reopens it).
    """

    def __init__(self, spec: ScannerConfig, on_line: Callable[[str | bytes], None]) -> None:
        self.spec = spec
        self._on_line = on_line
        self._lock = threading.Lock()
        self._closed = False
        self._serial: Any = None
        self._thread: threading.Thread | None = None

    @property
    def failed(self) -> str | None:
        error = getattr(self._serial, "error", None)
        return None if error is None else f"{type(error).__name__}: {error}"

    def start(self) -> ScannerFeed:
        """Open the scanner (raises ``OSError``/``serial.SerialException``/``ValueError``)."""
        from appliance.gate.scanner import SerialScanner, StreamScanner

        if self.spec.stdin:
            stream = sys.stdin
            if stream is None or stream.closed:
                raise OSError("stdin is not open")
            scanner = StreamScanner(stream, parser=_RawLines())  # type: ignore[arg-type]
            self._thread = threading.Thread(
                target=self._read_stream, args=(scanner,), name="stdin-scanner", daemon=True
            )
            self._thread.start()
        else:
            self._serial = SerialScanner(
                self.spec.port,
                baudrate=self.spec.baudrate,
                terminator=self.spec.terminator_bytes,
                on_scan=self._deliver,
                parser=_RawLines(),  # type: ignore[arg-type]
            ).start()
        return self

    def _read_stream(self, scanner: Any) -> None:
        try:
            for line in scanner:
                if self._closed:
                    return
                self._deliver(line)
        except (OSError, ValueError) as exc:  # stdin closed under the reader
            if not self._closed:
                log.warning("scanner: stdin failed: %s", exc)
            return
        if not self._closed:
            log.warning("scanner: stdin ended; no more scans (boarding passes, agent badges)")

    def _deliver(self, line: Any) -> None:
        with self._lock:
            if self._closed:
                return
            if not isinstance(line, str | bytes):  # e.g. a ScanError: no terminator in time
                log.warning("scan refused: %s", getattr(line, "reason", line))
                return
            try:
                self._on_line(line)
            except Exception:  # a scan must never take the scanner thread down
                log.exception("scanner: handling a scan failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._serial is not None:
            self._serial.stop()


class _ErrorLog(logging.Handler):
    """Collects WARNING and ERROR lines for the status file's "last errors"."""

    def __init__(self, tail: ErrorTail) -> None:
        super().__init__(logging.WARNING)
        self.tail = tail
        self.addFilter(ImageDataFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tail.add(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


@dataclass
class _Parts:
    boarding: BoardingGate
    source: FrameSource
    link: Any = None
    client: Any = None
    workflow: GateWorkflow | None = None
    scanner: ScannerFeed | None = None


class ServiceMonitor:
    """What the service knows about itself, for ``STATUS=`` lines and the status file."""

    def __init__(self, config: GateConfig, heartbeat: PipelineHeartbeat | None = None) -> None:
        self.config = config
        self.heartbeat = heartbeat or PipelineHeartbeat()
        self.counts: Counter[str] = Counter(granted=0, referred=0, manual_check=0)
        self._count_lock = threading.Lock()
        self.errors = ErrorTail()
        self.service = "starting"
        self.parts: _Parts | None = None
        self.healthy = True
        self.writer = StatusWriter(config.status_path, self.collect)
        self._last_state = ""
        self._dirty = threading.Event()
        self._written_at = 0.0

    def gate_state(self) -> str:
        gate = self.parts.boarding.gate if self.parts else None
        phase = getattr(gate, "phase", None) or getattr(gate, "state", None)
        return str(getattr(phase, "value", phase or "out_of_service"))

    def mark_dirty(self, *_: object) -> None:
        self._dirty.set()

    def count(self, outcome: str) -> None:
        """One traveller served (the serve loop and the scanner thread both count)."""
        with self._count_lock:
            self.counts[outcome] += 1

    def dropped(self) -> int:
        return int(getattr(self.parts.source, "dropped", 0)) if self.parts else 0

    def status_line(self) -> str:
        c = self.counts
        return (
            f"served {sum(c.values())}: granted {c['granted']}, referred {c['referred']},"
            f" manual check {c['manual_check']}; frames dropped {self.dropped()};"
            f" gate {self.gate_state()}"
        )

    def collect(self) -> dict[str, Any]:
        f = self.config.flight
        links: dict[str, str] = {"serial": "down", "matcher": "unknown", "camera": "unknown"}
        if self.parts is not None:
            link = self.parts.link
            links["serial"] = "up" if getattr(link, "link_up", False) else "down"
            breaker = getattr(self.parts.client, "breaker", None)
            state = getattr(breaker, "state", "unknown")
            links["matcher"] = {"closed": "up", "open": "down (circuit open)"}.get(state, state)
            links["camera"] = "ok" if self.healthy else "stalled"
        return {
            "device_id": self.config.device_id,
            "service": self.service,
            "state": self.gate_state(),
            "mode": self.config.capture_mode,
            "flight": {
                "carrier": f.carrier,
                "number": f.number,
                "date": f.date,
                "airport": f.airport,
                "gate": f.gate,
            },
            "counters": {
                "served": sum(self.counts.values()),
                "granted": self.counts["granted"],
                "referred": self.counts["referred"],
                "manual_check": self.counts["manual_check"],
                "frames": self.heartbeat.frames,
                "frames_dropped": self.dropped(),
            },
            "links": links,
            "pipeline": {
                "last_frame_age_s": round(self.heartbeat.age(), 1),
                "stall_s": self.config.stall_s,
            },
            "last_errors": self.errors.items(),
        }

    def on_tick(self, healthy: bool) -> None:
        """Every feeder round: refresh the status file when anything changed."""
        changed = self._dirty.is_set() or healthy != self.healthy
        self.healthy = healthy
        if self.service in ("serving", "stalled"):
            service = "serving" if healthy else "stalled"
            changed = changed or service != self.service
            self.service = service
        state = self.gate_state()
        if state != self._last_state:
            self._last_state = state
            sd_notify.notify(f"STATUS={self.status_line()}")
            changed = True
        if changed or time.monotonic() - self._written_at >= STATUS_REFRESH_S:
            self._dirty.clear()
            self.write()

    def write(self, **overrides: Any) -> bool:
        self._written_at = time.monotonic()
        return self.writer.write(**overrides)


def run_service(
    config: GateConfig,
    stop: threading.Event | None = None,
    *,
    result_hold_s: float = 1.0,
    open_camera: Callable[[CameraSpec], FrameSource] | None = None,
    log_fields: Any = None,
) -> int:
    """Serve travellers until ``stop``, SIGTERM/SIGINT, or the end of a replay source.

    A signal interrupts even a traveller in progress: that capture is purged and
    recorded as "shutdown", nothing more is sent, and the gate is left shut.
    ``open_camera`` replaces :func:`open_source` (tests); ``log_fields`` is the
    ``appliance.journal.GateFieldsFilter`` to point at the gate's state. A
    ``[scanner] port = "stdin"`` reads ``sys.stdin`` as it is when the service starts.
    """
    harden_process()
    stop = stop or threading.Event()
    restore_signals = install_shutdown_handler(on_signal=lambda _signum: stop.set())
    closers: list = []
    monitor = ServiceMonitor(config)
    error_log = _ErrorLog(monitor.errors)
    logging.getLogger().addHandler(error_log)
    if log_fields is not None:
        log_fields.set_state_source(monitor.gate_state)
    feeder: WatchdogFeeder | None = None
    wake = threading.Event()  # a scan came or the gate moved: the serve loop looks again
    try:
        monitor.write()
        try:
            try:
                check_service_config(config)
            except ConfigError as exc:
                raise StartupError(EXIT_CONFIG, f"configuration: {exc}") from exc
            parts = _build(config, closers, open_camera or open_source)
            monitor.parts = parts
            parts.boarding.gate.on_transition(monitor.mark_dirty)
            parts.boarding.gate.on_transition(partial(_wake_on_change, wake))
            assert parts.workflow is not None
            if config.scanner is not None:
                on_line = _scan_handler(parts.workflow, monitor, wake)
                parts.scanner = _start_scanner(config.scanner, closers, on_line)
        except StartupError as exc:
            log.error("start-up failed: %s", exc)
            sd_notify.notify(f"STATUS=start-up failed: {exc}")
            monitor.service = "start-up failed"
            monitor.write()
            return exc.code
        source = _Beating(parts.source, monitor.heartbeat)
        monitor.heartbeat.beat()  # start-up counts as progress; frames must follow
        monitor.heartbeat.frames = 0
        monitor.service = "serving"
        sd_notify.notify("READY=1")
        sd_notify.notify(
            f"STATUS=serving {_flight_name(config)} as {config.device_id};"
            f" gate {monitor.gate_state()}"
        )
        log.info(
            "gate %s ready for %s (%s, scanner %s)",
            config.device_id,
            _flight_name(config),
            config.capture_mode,
            config.scanner.port if config.scanner else "none",
        )
        feeder = WatchdogFeeder(monitor.heartbeat, config.stall_s, on_tick=monitor.on_tick)
        feeder.start()
        try:
            return _serve(config, parts, source, stop, result_hold_s, monitor, wake)
        except ShutdownRequested as exc:
            log.info("stopping: %s", exc)
            return EXIT_OK
    finally:
        if feeder is not None:
            feeder.stop()
        sd_notify.notify("STOPPING=1")
        _shutdown(closers)
        if monitor.service != "start-up failed":
            monitor.service = "stopped"
        monitor.write()
        logging.getLogger().removeHandler(error_log)
        restore_signals()


def _wake_on_change(wake: threading.Event, step: Any) -> None:
    """Gate listener: the serve loop looks again after an accepted transition (a refused
    one changed nothing and must not make a waiting loop spin)."""
    if step.accepted:
        wake.set()


def _flight_name(config: GateConfig) -> str:
    f = config.flight
    return f"{f.carrier}{f.number} {f.date} {f.airport}" + (f" gate {f.gate}" if f.gate else "")


def _build(
    config: GateConfig, closers: list, open_camera: Callable[[CameraSpec], FrameSource]
) -> _Parts:
    """Every part, in order of how likely it fails; ``closers`` collects what to close."""
    import datetime as dt

    from appliance.custody.ledger import PurgeLedger
    from appliance.errors import MatchingUnavailable, ModelError
    from appliance.gate.boarding_log import BoardingLog
    from appliance.gate.flight import FlightInfo
    from appliance.gate.machine import GateController
    from appliance.gate.scanner import DEFAULT_AGENT_PREFIX, ScanParser
    from appliance.matching.client import MatchingClient
    from appliance.vision.detectors import create_detector
    from firmware_bridge.host import CommandRejected, GateLink, LinkError
    from gate_contract.keys import PkiLayout

    try:
        vision = config.vision
        detector = create_detector(
            vision.runtime, vision.model, zone_width=vision.zone_width, min_score=vision.min_score
        )
    except (ModelError, OSError) as exc:
        raise StartupError(EXIT_MODEL, f"face detection model: {exc}") from exc

    try:
        ledger = PurgeLedger(config.ledger_path, default_key_path(config.ledger_path))
    except OSError as exc:
        raise StartupError(EXIT_STARTUP, f"purge ledger {config.ledger_path}: {exc}") from exc

    try:
        link = GateLink(config.serial.port, config.serial.relay_key).open()
    except (LinkError, CommandRejected, ValueError) as exc:
        raise StartupError(EXIT_SERIAL, f"gate MCU on {config.serial.port}: {exc}") from exc
    closers.append(link)
    gate = GateController(link, pulse_ms=config.serial.pulse_ms)
    try:
        gate.start()
    except (LinkError, CommandRejected) as exc:
        raise StartupError(EXIT_SERIAL, f"gate MCU on {config.serial.port}: {exc}") from exc
    closers.insert(0, gate)  # from here on, shutdown leaves the gate referring

    try:
        client = MatchingClient(
            config.matcher.target,
            PkiLayout(config.matcher.pki_dir),
            config.device_id,
            deadline_s=config.matcher.deadline_s,
        )
    except (OSError, ValueError) as exc:
        raise StartupError(EXIT_MATCHER, f"device PKI in {config.matcher.pki_dir}: {exc}") from exc
    closers.append(client)
    flight = config.flight
    flight_info = FlightInfo(
        flight.carrier, flight.number, flight.date, flight.airport, flight.gate
    )
    try:
        session = client.open_session(flight_info)
    except MatchingUnavailable as exc:
        raise StartupError(EXIT_MATCHER, f"matcher {config.matcher.target}: {exc}") from exc
    log.info("session %s: gallery of %d", session.session_id, session.gallery_size)

    try:
        source = open_camera(config.camera)
    except CameraError as exc:
        raise StartupError(EXIT_CAMERA, f"camera: {exc}") from exc
    closers.append(source)
    boarding = BoardingGate(
        detector,
        client,
        gate,
        ledger,
        limits=config.quality,
        capture_window_frames=config.vision.capture_window_frames,
    )
    try:
        boarding_log = BoardingLog(config.boarding_log_path)
    except OSError as exc:
        raise StartupError(EXIT_STARTUP, f"boarding log {config.boarding_log_path}: {exc}") from exc
    prefix = config.scanner.agent_prefix if config.scanner else DEFAULT_AGENT_PREFIX
    agents = config.scanner.agent_ids if config.scanner else None
    workflow = GateWorkflow(
        boarding,
        flight_info,
        mode=Mode(config.capture_mode),
        boarding_log=boarding_log,
        scanner=ScanParser(
            agent_prefix=prefix,
            reference_date=dt.date.fromisoformat(flight.date),
            agent_ids=agents,
        ),
    )
    return _Parts(boarding, source, link, client, workflow)


def _start_scanner(
    spec: ScannerConfig, closers: list, on_line: Callable[[str | bytes], None]
) -> ScannerFeed:
    """Open the configured scanner; it is closed first on the way out (before the gate)."""
    import serial

    feed = ScannerFeed(spec, on_line)
    try:
        feed.start()
    except (OSError, ValueError, serial.SerialException) as exc:
        raise StartupError(EXIT_SCANNER, f"scanner on {spec.port}: {exc}") from exc
    closers.insert(0, feed)  # no scan may reach the gate once shutdown has begun
    return feed


def _scan_handler(
    workflow: GateWorkflow, monitor: ServiceMonitor, wake: threading.Event
) -> Callable[[str | bytes], None]:
    """The scanner's callback: hand the line to the workflow, wake the serve loop.

    Nothing of a boarding pass is logged here but the outcome of its check (the workflow
    logs the gate's transitions); a pass refused at a ready gate is a traveller referred.
    """
    from appliance.gate.passes import PassCheck
    from appliance.gate.scanner import AgentAction

    def on_line(line: str | bytes) -> None:
        before = workflow.gate.phase
        try:
            result = workflow.scan(line)
        finally:
            wake.set()
        if isinstance(result, PassCheck):
            if result.ok:
                log.info("boarding pass scanned: checks out against the flight")
            else:
                log.info("boarding pass scanned: %s", result.outcome.value)
                if before is State.READY:
                    monitor.count("referred")
                    log.info("traveller: referred (pass %s)", result.outcome.value)
                    sd_notify.notify(f"STATUS={monitor.status_line()}")
        elif isinstance(result, AgentAction):
            command = result.command.value if result.command else "present"
            log.info("agent %s scanned: %s", result.agent_id, command)
        monitor.mark_dirty()

    return on_line


def _serve(
    config: GateConfig,
    parts: _Parts,
    source: _Beating,
    stop: threading.Event,
    result_hold_s: float,
    monitor: ServiceMonitor,
    wake: threading.Event,
) -> int:
    workflow = parts.workflow
    assert workflow is not None
    gate = workflow.gate
    scanner = parts.scanner
    attended = scanner is not None  # an agent can release or cancel with a badge
    camera_failures = 0
    out_of_service = False

    def scanner_failed() -> bool:
        return scanner is not None and scanner.failed is not None

    while not stop.is_set():
        if scanner is not None and scanner.failed:
            log.error("scanner on %s failed (%s); exiting", scanner.spec.port, scanner.failed)
            return EXIT_SCANNER
        wake.clear()  # before reading the phase: a change from here on wakes the wait
        phase = gate.phase
        if phase is State.OUT_OF_SERVICE:
            if not out_of_service:
                log.error(
                    "gate out of service; waiting for the MCU link (no watchdog pings"
                    " meanwhile: systemd restarts the service after %.0f s)",
                    config.stall_s,
                )
            out_of_service = True
            _wait(wake, stop, source, monitor.heartbeat, alive=False, interrupt=scanner_failed)
            continue
        out_of_service = False
        if not _capture_now(workflow, phase):
            if not attended and phase in (State.REFER_TO_AGENT, State.MANUAL_CHECK):
                # Unattended: nobody can resolve it, so the gate resets itself, but only
                # once the traveller has left the lane: an opted-out (or referred) face
                # is never captured again on the way out.
                if not _lane_clears(source, parts.boarding.detector, stop):
                    continue
                with contextlib.suppress(Exception):
                    gate.ready("lane clear")
                if gate.phase is phase:  # refused: wait for a change rather than spin
                    _wait(wake, stop, source, monitor.heartbeat, alive=True)
                continue
            _wait(wake, stop, source, monitor.heartbeat, alive=True, interrupt=scanner_failed)
            continue
        result = workflow.board(source)
        if result.outcome == "referred" and result.reason == SOURCE_ENDED:
            if config.camera.kind == "replay":
                log.info("replay source ended")
                break
            camera_failures += 1
            if camera_failures >= MAX_CAMERA_FAILURES:
                log.error("camera gave no frame %d times in a row; exiting", camera_failures)
                return EXIT_CAMERA
            stop.wait(0.5)
            if workflow.mode is Mode.BIOMETRIC_FIRST and not stop.is_set():
                # Nobody scanned anything: the camera was polled, not a traveller served.
                with contextlib.suppress(Exception):
                    gate.ready("camera glitch")
            continue
        camera_failures = 0
        if result.outcome == "no_face":
            continue
        monitor.count(result.outcome)
        log.info(
            "traveller: %s (%s)",
            result.outcome,
            result.reason,
            extra={"capture_id": result.capture_id},
        )
        sd_notify.notify(f"STATUS={monitor.status_line()}")
        monitor.mark_dirty()
        if not attended:
            stop.wait(result_hold_s)  # the traveller sees the outcome, then the next one
    return EXIT_OK


CLEAR_LANE_FRAMES = 15  # half a second of a 30 fps camera with nobody in view


def _lane_clears(source: _Beating, detector, stop: threading.Event) -> bool:
    """Read frames until ``CLEAR_LANE_FRAMES`` in a row show no face (True), or the source
    ends or ``stop`` is set (False only on stop). Each frame is zeroized once looked at;
    nothing is captured or sent."""
    clear = 0
    while clear < CLEAR_LANE_FRAMES:
        if stop.is_set():
            return False
        frame = source.read()
        if frame is None:
            return not source.live  # a replay that ended: nobody left to see
        try:
            clear = 0 if detector.detect(frame) else clear + 1
        finally:
            frame.fill(0)
    return True


def _capture_now(workflow: GateWorkflow, phase: State) -> bool:
    """Has the workflow a traveller for the camera now? (otherwise the loop waits)

    ``capturing``: a pass checked out (pass-then-face, or a pass at a ready gate in
    biometric-first). ``ready``: biometric-first captures whoever steps up;
    pass-then-face waits for the pass. ``manual_check`` with the opt-out not yet taken:
    ``board`` records it (no capture). Anything else waits: for the agent
    (``refer_to_agent``, ``manual_check``), or for the passage after a grant or release;
    so does a traveller already decided (e.g. a refused pass, then the opt-out button):
    ``board`` would only repeat the decision.
    """
    current = workflow.current
    if current is not None and current.decided is not None:
        return False
    if phase is State.CAPTURING:
        return True
    if phase is State.READY:
        return workflow.mode is Mode.BIOMETRIC_FIRST
    if phase is State.MANUAL_CHECK:
        return workflow.gate.opt_out_pending()
    return False


def _wait(
    wake: threading.Event,
    stop: threading.Event,
    source: _Beating,
    heartbeat: PipelineHeartbeat,
    *,
    alive: bool,
    interrupt: Callable[[], bool] = lambda: False,
) -> None:
    """Wait for ``wake`` (a scan, a gate transition), ``stop`` or ``interrupt()``.

    With ``alive`` the pipeline still shows it works: a live camera is read on (each frame
    beats the heartbeat and is zeroized at once, never looked at), a replay is left
    alone (its frames are the next travellers') and the wait itself counts as progress.
    """
    while not stop.is_set() and not wake.is_set() and not interrupt():
        if alive and source.live:
            frame = None
            try:
                frame = source.read()
                if frame is None:
                    wake.wait(IDLE_POLL_S)
            finally:
                if frame is not None:
                    frame.fill(0)
            continue
        if alive:
            heartbeat.alive()
        wake.wait(IDLE_POLL_S)


def _shutdown(closers: list) -> None:
    """Scanner first (no agent action after this), then the gate (refer: relay closed,
    "see agent"), then link, client, camera."""
    from appliance.gate.machine import GateController

    for part in closers:
        try:
            if isinstance(part, GateController):
                part.refer()
            else:
                part.close()
        except Exception as exc:
            log.warning("shutdown: %s: %s", type(part).__name__, exc)


def main(config_path: Path) -> int:
    """``gatectl run --config FILE``."""
    from appliance.service.journal import setup_logging

    try:
        config = load_config(config_path)
        check_service_config(config)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    level = min(logging.getLogger().getEffectiveLevel(), logging.INFO)
    fields = setup_logging(config.device_id, level=level)
    return run_service(config, log_fields=fields)

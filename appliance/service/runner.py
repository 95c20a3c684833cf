"""The on-device service systemd runs (``gatectl run --config FILE``).

Builds the parts from the configuration, opens the flight session, starts the gate and
the barcode scanner, tells systemd it is ready, then runs the gate workflow
(:class:`appliance.gate.workflow.GateWorkflow`, ``[capture] mode``) until stopped. On the way
out the scanner is silenced first (no agent action after that), then the gate is left
referring with the relay closed.

The serve loop captures only when the workflow has a traveller to capture: at a ready
gate in biometric-first mode, after a boarding pass that checks out (the gate is then
``capturing``; always so in pass-then-face), or to record an opt-out. Otherwise it waits
for a scan or a gate transition (an :class:`threading.Event` both set): for the pass in
pass-then-face, for the agent while the gate refers (``refer_to_agent``,
``manual_check``), for the door sensor or the passage window after a grant (MCU door
events reach the state machine through the link, see
``appliance.gate.machine.GateController``). Without a
scanner nobody can resolve a referral, so biometric-first then runs unattended: the
outcome is shown for ``result_hold_s``, and after a referral or an opt-out the gate
resets itself only once the lane is clear (no face for half a second), so that
traveller is not captured again.
Scans arrive on the scanner's thread (``[scanner] port``: a serial device, or ``stdin``
for a keyboard wedge) and go to ``GateWorkflow.scan`` as text; each traveller gets one
line in the boarding log (``[boarding_log] path``; never images).

The watchdog is fed only while frames flow (``appliance.service.heartbeat``). While
the loop waits (for a scan, the agent
or a passage) a live camera is still read and each frame zeroized at once, so it still
beats only if frames flow; a replay source is not consumed, the waiting loop beats
without a frame. While the gate is out of service (MCU link lost or faulted) nothing
beats, as before: unless the link returns within ``stall_s``, systemd restarts the
service, which greets the MCU again. The same thread publishes ``STATUS=`` lines
with the gate state and rewrites the status file ``gatectl status`` reads
(``appliance.service.monitor``; counters, links, last errors, never images).
With a ``[screens]`` section the traveller display, the agent station and ``/metrics``
are served from a thread of this process (``appliance.service.screen_feed``); agents
sign in there with the credentials of ``[agents]``, and their releases and cancels go
through the same workflow as badges at the scanner.

When purge records cannot be made durable (disk full, I/O error) the gate stops
granting: it goes out of service (relay closed, indicator "out of service"), the
journal and the status file say why, and the loop retries the waiting records every
``LEDGER_RETRY_S`` while the watchdog is still fed (a restart would not free the disk).
Once they are written the gate is ready again by itself.

An unreachable matching service is not a start-up failure: the service starts with the
gate out of service (relay shut, "see agent") while ``appliance.service.session`` retries
the flight session with backoff, and serves as soon as it opens, without a restart; it
also reopens the session when the connection drops (a restarted matcher), before the
next traveller. A start-up failure (configuration, model, serial port, device PKI,
camera, scanner) logs one line and returns its exit code
(``appliance.errors.StartupError.exit_code``) so ``Restart=on-failure`` retries; so
does a serial scanner that fails while serving. A fault with one traveller never stops
the loop (``TravellerPipeline`` refers that traveller).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from appliance.errors import (
    CameraError,
    ConfigError,
    InstanceLocked,
    ScannerError,
    StartupError,
)
from appliance.gate.agents import AgentAction
from appliance.gate.machine import PASSAGE_STATES, Event, GateController, State, Transition
from appliance.gate.outcome import Outcome
from appliance.gate.passes import PassCheck
from appliance.gate.workflow import GateWorkflow, Mode
from appliance.pipeline.lane import lane_clears
from appliance.service import sd_notify
from appliance.service.config import GateConfig, check_service_config, load_config
from appliance.service.hardening import harden_process
from appliance.service.heartbeat import BeatingSource, PipelineHeartbeat, WatchdogFeeder
from appliance.service.instance import InstanceLock
from appliance.service.journal import GateFieldsFilter
from appliance.service.monitor import ErrorLog, ServiceMonitor, ServiceState
from appliance.service.parts import Closeable, ServiceParts, build_parts, shut_down, start_scanner
from appliance.service.reload import Reloader, install_reload_signal
from appliance.service.screen_feed import start_screens
from appliance.shutdown import ShutdownRequested, install_shutdown_handler
from appliance.vision.camera import CameraSpec, FrameSource
from appliance.vision.frame_pump import open_source

log = logging.getLogger("gate.service")

EXIT_OK = 0
# A live camera that gives no frame this many windows in a row: exit and let systemd restart.
MAX_CAMERA_FAILURES = 20
IDLE_POLL_S = 0.2  # a waiting serve loop looks at stop / the heartbeat this often
LEDGER_RETRY_S = 1.0  # a ledger that is not durable is retried this often


def run_service(
    config: GateConfig,
    stop: threading.Event | None = None,
    *,
    result_hold_s: float = 1.0,
    open_camera: Callable[[CameraSpec], FrameSource] = open_source,
    log_fields: GateFieldsFilter | None = None,
) -> int:
    """:func:`serve_unit` under the unit's instance lock (``appliance.service.instance``):
    a second instance exits before it opens the port or writes the status file."""
    try:
        instance = InstanceLock(config.lock_path, config.serial.port)
    except InstanceLocked as exc:
        log.error("start-up failed: %s", exc)
        sd_notify.notify(f"STATUS=start-up failed: {exc}")
        return exc.exit_code
    reload_requested = threading.Event()  # SIGHUP: apply the file's [flight] (reload)
    restore_reload = install_reload_signal(reload_requested)
    try:
        return serve_unit(
            config,
            stop,
            result_hold_s=result_hold_s,
            open_camera=open_camera,
            log_fields=log_fields,
            reload_requested=reload_requested,
        )
    finally:
        restore_reload()
        instance.close()


def serve_unit(
    config: GateConfig,
    stop: threading.Event | None = None,
    *,
    result_hold_s: float = 1.0,
    open_camera: Callable[[CameraSpec], FrameSource] = open_source,
    log_fields: GateFieldsFilter | None = None,
    reload_requested: threading.Event | None = None,
) -> int:
    """Serve travellers until ``stop``, SIGTERM/SIGINT, or the end of a replay source.

    A signal interrupts even a traveller in progress: that capture is purged and
    recorded as "shutdown", nothing more is sent, and the gate is left shut.
    ``open_camera`` builds the camera from ``[camera]`` (a test may hand in its own);
    ``log_fields`` is the journal's fields filter, pointed at the gate's state. A
    ``[scanner] port = "stdin"`` reads ``sys.stdin`` as it is when the service starts.
    """
    harden_process()
    stop = stop or threading.Event()
    restore_signals = install_shutdown_handler(on_signal=lambda _signum: stop.set())
    closers: list[Closeable] = []
    monitor = ServiceMonitor(config)
    error_log = ErrorLog(monitor.errors)
    logging.getLogger().addHandler(error_log)
    if log_fields is not None:
        log_fields.set_state_source(monitor.gate_state)
    feeder: WatchdogFeeder | None = None
    wake = threading.Event()  # a scan came or the gate moved: the serve loop looks again
    try:
        monitor.write()
        try:
            parts = _start(config, closers, open_camera, monitor, wake)
            if reload_requested is not None:
                closers.insert(0, Reloader(config, parts, monitor, reload_requested).start())
        except StartupError as exc:
            log.error("start-up failed: %s", exc)
            sd_notify.notify(f"STATUS=start-up failed: {exc}")
            monitor.service = ServiceState.STARTUP_FAILED
            monitor.write()
            return exc.exit_code
        source = BeatingSource(parts.source, monitor.heartbeat)
        monitor.heartbeat.beat()  # start-up counts as progress; frames must follow
        monitor.heartbeat.frames = 0
        monitor.service = ServiceState.SERVING
        sd_notify.notify("READY=1")
        sd_notify.notify(
            f"STATUS=serving {config.flight.name} as {config.device_id};"
            f" gate {monitor.gate_state()}"
        )
        log.info(
            "gate %s ready for %s (%s, scanner %s)",
            config.device_id,
            config.flight.name,
            config.capture_mode,
            config.scanner.port if config.scanner else "none",
        )
        feeder = WatchdogFeeder(monitor.heartbeat, config.stall_s, on_tick=monitor.on_tick)
        feeder.start()
        try:
            _serve(config, parts, source, stop, result_hold_s, monitor, wake)
        except ShutdownRequested as exc:
            log.info("stopping: %s", exc)
        except StartupError as exc:  # a part the service cannot go on without failed
            log.error("%s; exiting", exc)
            return exc.exit_code
        return EXIT_OK
    finally:
        if feeder is not None:
            feeder.stop()
        sd_notify.notify("STOPPING=1")
        shut_down(closers)
        if monitor.service is not ServiceState.STARTUP_FAILED:
            monitor.service = ServiceState.STOPPED
        monitor.write()
        logging.getLogger().removeHandler(error_log)
        restore_signals()


def _start(
    config: GateConfig,
    closers: list[Closeable],
    open_camera: Callable[[CameraSpec], FrameSource],
    monitor: ServiceMonitor,
    wake: threading.Event,
) -> ServiceParts:
    """Check the configuration, build every part and open the scanner."""
    try:
        check_service_config(config)
    except ConfigError as exc:
        raise ConfigError(f"configuration: {exc}") from exc
    parts = build_parts(config, closers, open_camera)
    monitor.parts = parts
    parts.session.on_change(monitor.mark_dirty)
    parts.gate.on_transition(monitor.mark_dirty)
    parts.gate.on_transition(partial(_wake_on_change, wake))
    if config.screens is not None:
        parts.screens = start_screens(config, parts, monitor)
        closers.insert(0, parts.screens)  # no agent action once shutdown has begun
        monitor.screens_url = parts.screens.url
    if config.scanner is not None:
        on_line = _scan_handler(parts.workflow, monitor, wake)
        parts.scanner = start_scanner(config.scanner, closers, on_line)
    return parts


def _wake_on_change(wake: threading.Event, step: Transition) -> None:
    """Gate listener: the serve loop looks again after an accepted transition (a refused
    one changed nothing and must not make a waiting loop spin)."""
    if step.accepted:
        wake.set()


def _scan_handler(
    workflow: GateWorkflow, monitor: ServiceMonitor, wake: threading.Event
) -> Callable[[str | bytes], None]:
    """The scanner's callback: hand the line to the workflow, wake the serve loop.

    Nothing of a boarding pass is logged here but the outcome of its check (the workflow
    logs the gate's transitions); a pass refused at a ready gate is a traveller referred.
    """

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
                    monitor.count(Outcome.REFERRED)
                    log.info("traveller: referred (pass %s)", result.outcome.value)
                    sd_notify.notify(f"STATUS={monitor.status_line()}")
        elif isinstance(result, AgentAction):
            log.info("agent %s: %s", result.agent_id, result.command.value)
        monitor.mark_dirty()

    return on_line


def _serve(
    config: GateConfig,
    parts: ServiceParts,
    source: BeatingSource,
    stop: threading.Event,
    result_hold_s: float,
    monitor: ServiceMonitor,
    wake: threading.Event,
) -> None:
    """The serve loop, until ``stop`` or the end of a replay; raises a ``StartupError``
    (its exit code) when the scanner or a live camera fails for good."""
    workflow = parts.workflow
    gate = parts.gate
    scanner = parts.scanner
    attended = scanner is not None  # an agent can release or cancel with a badge
    camera_failures = 0
    out_of_service = False
    lane_must_clear = False  # unattended: the traveller just served is still in view
    # ... unless they walked through: the door opened and closed after their grant. The
    # next traveller may then stand in view at once (a queue); waiting for an empty lane
    # would leave them, and everyone behind, at a shut gate.
    walked_through = threading.Event()

    def passage_ended(step: Transition) -> None:
        if step.accepted and step.event is Event.DOOR_CLOSED and step.source in PASSAGE_STATES:
            walked_through.set()

    gate.on_transition(passage_ended)

    def scanner_failed() -> bool:
        return scanner is not None and scanner.failed is not None

    ledger_down = False
    while not stop.is_set():
        if scanner is not None and scanner.failed:
            raise ScannerError(f"scanner on {scanner.spec.port} failed ({scanner.failed})")
        wake.clear()  # before reading the phase: a change from here on wakes the wait
        if _ledger_hold(parts, monitor, ledger_down):
            ledger_down = True
            if gate.out_of_service_cause is Event.LEDGER_FAILED:
                # Alive meanwhile: the watchdog must not restart a unit whose disk is full.
                retry_at = time.monotonic() + LEDGER_RETRY_S
                _wait(
                    wake, stop, source, monitor.heartbeat, alive=True,
                    interrupt=lambda at=retry_at: scanner_failed() or time.monotonic() >= at,
                )  # fmt: skip
                continue
        elif ledger_down:
            ledger_down = False
            _ledger_back(gate, monitor)
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
        if not parts.session.ready:
            _stand_by_for_matcher(parts, stop, source, monitor)
            continue
        if lane_must_clear and phase is State.READY:
            # Nobody is captured again until the lane has been clear: a traveller who
            # lingers after a grant (or comes back after an MCU reboot) is not re-served.
            if walked_through.is_set() or lane_clears(source, parts.detector, stop):
                lane_must_clear = False
            continue
        if not workflow.wants_capture():
            if not attended and phase in (State.REFER_TO_AGENT, State.MANUAL_CHECK):
                # Unattended: nobody can resolve it, so the gate resets itself, but only
                # once the traveller has left the lane.
                if not lane_clears(source, parts.detector, stop):
                    continue
                lane_must_clear = False  # just seen clear: the next traveller is served
                with contextlib.suppress(Exception):
                    gate.ready("lane clear")
                if gate.phase is phase:  # refused: wait for a change rather than spin
                    _wait(wake, stop, source, monitor.heartbeat, alive=True)
                continue
            _wait(wake, stop, source, monitor.heartbeat, alive=True, interrupt=scanner_failed)
            continue
        walked_through.clear()
        result = workflow.board(source)
        if result.camera_ended:
            if config.camera.kind == "replay":
                log.info("replay source ended")
                return
            camera_failures += 1
            if camera_failures >= MAX_CAMERA_FAILURES:
                raise CameraError(f"camera gave no frame {camera_failures} times in a row")
            stop.wait(0.5)
            if workflow.mode is Mode.BIOMETRIC_FIRST and not stop.is_set():
                # Nobody scanned anything: the camera was polled, not a traveller served.
                with contextlib.suppress(Exception):
                    gate.ready("camera glitch")
            continue
        camera_failures = 0
        if result.outcome is Outcome.NO_FACE:
            continue
        monitor.count(result.outcome)
        if parts.screens is not None:
            parts.screens.traveller_served(result)
        log.info(
            "traveller: %s (%s)",
            result.outcome,
            result.reason,
            extra={"capture_id": result.capture_id},
        )
        sd_notify.notify(f"STATUS={monitor.status_line()}")
        monitor.mark_dirty()
        if not attended:
            lane_must_clear = True
            stop.wait(result_hold_s)  # the traveller sees the outcome, then the next one


def _ledger_hold(parts: ServiceParts, monitor: ServiceMonitor, down_before: bool) -> bool:
    """Is the ledger not durable (after one more try)? Then the gate stops granting.

    A passage in progress is left to end (its capture's intent record is durable); a gate
    out of service for another reason stays so, and comes back here once that ends.
    """
    ledger, gate = parts.pipeline.ledger, parts.gate
    if ledger.durable or ledger.retry():
        return False
    why = ledger.failure or "records waiting for the disk"
    if not down_before:
        log.error(
            "purge ledger not durable (%s): %d records waiting; the gate is out of service"
            " and grants nobody until they are written",
            why,
            ledger.pending,
        )
        sd_notify.notify(f"STATUS=out of service: purge ledger not durable ({why})")
        monitor.mark_dirty()
    if gate.phase is not State.OUT_OF_SERVICE and gate.phase not in PASSAGE_STATES:
        gate.fire(Event.LEDGER_FAILED, f"purge ledger not durable ({why})")
    return True


def _ledger_back(gate: GateController, monitor: ServiceMonitor) -> None:
    log.info("purge ledger durable again: every waiting record is written; back in service")
    if gate.out_of_service_cause is Event.LEDGER_FAILED and gate.phase is State.OUT_OF_SERVICE:
        gate.fire(Event.LEDGER_RESTORED, "purge ledger durable again")
    sd_notify.notify(f"STATUS={monitor.status_line()}")
    monitor.mark_dirty()


def _stand_by_for_matcher(
    parts: ServiceParts, stop: threading.Event, source: BeatingSource, monitor: ServiceMonitor
) -> None:
    """No flight session (the matching service is unreachable, at boot or since): the gate
    is out of service, relay shut and "see agent", until the session keeper opens it.

    The service itself is healthy, so the watchdog is still fed while frames flow (a
    restart would not bring the matcher back); an agent may still release by hand after a
    manual check. Once the session is open the gate is ready again, without a restart.
    """
    gate = parts.gate
    monitor.mark_dirty()
    sd_notify.notify("STATUS=out of service: matching service unreachable; retrying")
    while not stop.is_set() and not parts.session.ready:
        phase = gate.phase
        if phase is State.OUT_OF_SERVICE:
            return  # the MCU link went: that wait comes first
        if phase is not State.REFER_TO_AGENT and phase not in PASSAGE_STATES:
            gate.refer("matching service unreachable: see agent")  # a passage runs out
        _wait(
            threading.Event(),
            stop,
            source,
            monitor.heartbeat,
            alive=True,
            interrupt=lambda was=phase: parts.session.ready or gate.phase is not was,
        )
    if parts.session.ready and gate.phase is State.REFER_TO_AGENT:
        gate.ready("matching service back")
        log.info("matching service reachable again: the gate serves")
    monitor.mark_dirty()


def _wait(
    wake: threading.Event,
    stop: threading.Event,
    source: BeatingSource,
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


def main(config_path: Path) -> int:
    """``gatectl run --config FILE``."""
    from appliance.service.journal import setup_logging

    try:
        config = load_config(config_path)
        check_service_config(config)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return exc.exit_code
    level = min(logging.getLogger().getEffectiveLevel(), logging.INFO)
    fields = setup_logging(config.device_id, level=level)
    return run_service(config, log_fields=fields)


__all__ = [
    "EXIT_OK",
    "IDLE_POLL_S",
    "LEDGER_RETRY_S",
    "MAX_CAMERA_FAILURES",
    "main",
    "run_service",
    "serve_unit",
]

"""The on-device service systemd runs (``gatectl run --config FILE``).

Builds the parts from the configuration, opens the flight session, starts the gate,
tells systemd it is ready, then serves travellers one capture window at a time until
stopped. On the way out the gate is left referring with the relay closed.

Watchdog only while healthy: every frame the serve loop takes from the camera beats a
:class:`PipelineHeartbeat`. A :class:`WatchdogFeeder` thread sends ``WATCHDOG=1`` each
half ``WatchdogSec`` *only* while the last frame is younger than ``[service] stall_s``; a
stuck camera thread, a dead camera or a wedged serve loop all stop the frames, so the
pings stop and systemd restarts the service. The same thread publishes ``STATUS=`` lines
with the gate state and rewrites the status file ``gatectl status`` reads
(``appliance.status``; counters, links, last errors, never images).

A start-up failure (configuration, model, serial port, matcher, camera) logs one line
and returns a non-zero code so ``Restart=on-failure`` retries; a fault with one
traveller never stops the loop (``BoardingGate`` refers that traveller).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import sd_notify
from appliance.audit import default_key_path
from appliance.boarding import BoardingGate
from appliance.camera import (
    CameraError,
    FrameSource,
    OpenCVSource,
    Picamera2Source,
    ReconnectingSource,
    ReplaySource,
)
from appliance.config import CameraSpec, ConfigError, GateConfig, load_config
from appliance.frame_pump import FramePump
from appliance.hardening import (
    ImageDataFilter,
    ShutdownRequested,
    harden_process,
    install_shutdown_handler,
)
from appliance.status import ErrorTail, StatusWriter

log = logging.getLogger("gate.service")

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_CONFIG = 2
EXIT_MODEL = 3
EXIT_SERIAL = 4
EXIT_MATCHER = 5
EXIT_CAMERA = 6

SOURCE_ENDED = "camera delivered no frame"
# A live camera that gives no frame this many windows in a row: exit and let systemd restart.
MAX_CAMERA_FAILURES = 20
STATUS_REFRESH_S = 30.0  # the status file is rewritten at least this often (freshness)


class StartupError(RuntimeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def open_source(spec: CameraSpec) -> FrameSource:
    """The camera source the configuration names (raises CameraError).

    A live camera reconnects by itself after a drop-out and runs behind a frame pump,
    so the vision stage never blocks it: the newest frame wins, older ones are zeroized
    and counted as dropped.
    """
    if spec.kind == "replay":
        return ReplaySource(Path(spec.target), canvas=spec.size, repeat=spec.repeat)
    if spec.kind == "opencv":
        device = spec.target
        assert isinstance(device, int | str)
        return FramePump(ReconnectingSource(lambda: OpenCVSource(device, spec.size)))
    if spec.kind == "picamera2":
        return FramePump(ReconnectingSource(lambda: Picamera2Source(spec.size)))
    raise CameraError(f"unknown camera kind {spec.kind!r}")


class PipelineHeartbeat:
    """When the capture pipeline last made progress (a frame reached the serve loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.frames = 0

    def beat(self) -> None:
        self._last = self._clock()
        self.frames += 1

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


class ServiceMonitor:
    """What the service knows about itself, for ``STATUS=`` lines and the status file."""

    def __init__(self, config: GateConfig, heartbeat: PipelineHeartbeat | None = None) -> None:
        self.config = config
        self.heartbeat = heartbeat or PipelineHeartbeat()
        self.counts: Counter[str] = Counter()
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
    ``appliance.journal.GateFieldsFilter`` to point at the gate's state.
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
    try:
        monitor.write()
        try:
            parts = _build(config, closers, open_camera or open_source)
        except StartupError as exc:
            log.error("start-up failed: %s", exc)
            sd_notify.notify(f"STATUS=start-up failed: {exc}")
            monitor.service = "start-up failed"
            monitor.write()
            return exc.code
        monitor.parts = parts
        if hasattr(parts.boarding.gate, "on_transition"):
            parts.boarding.gate.on_transition(monitor.mark_dirty)
        source = _Beating(parts.source, monitor.heartbeat)
        monitor.heartbeat.beat()  # start-up counts as progress; frames must follow
        monitor.heartbeat.frames = 0
        monitor.service = "serving"
        sd_notify.notify("READY=1")
        sd_notify.notify(
            f"STATUS=serving {_flight_name(config)} as {config.device_id};"
            f" gate {monitor.gate_state()}"
        )
        log.info("gate %s ready for %s", config.device_id, _flight_name(config))
        feeder = WatchdogFeeder(monitor.heartbeat, config.stall_s, on_tick=monitor.on_tick)
        feeder.start()
        try:
            return _serve(config, parts.boarding, source, stop, result_hold_s, monitor)
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


def _flight_name(config: GateConfig) -> str:
    f = config.flight
    return f"{f.carrier}{f.number} {f.date} {f.airport}" + (f" gate {f.gate}" if f.gate else "")


def _build(
    config: GateConfig, closers: list, open_camera: Callable[[CameraSpec], FrameSource]
) -> _Parts:
    """Every part, in order of how likely it fails; ``closers`` collects what to close."""
    from appliance.detector import create_detector
    from appliance.gate import GateController
    from appliance.ledger import PurgeLedger
    from appliance.matching_client import FlightInfo, MatchingClient, MatchingUnavailable
    from appliance.model_store import ModelError
    from appliance.pki import PkiLayout
    from firmware_bridge.host import CommandRejected, GateLink, LinkError

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
    try:
        session = client.open_session(
            FlightInfo(flight.carrier, flight.number, flight.date, flight.airport, flight.gate)
        )
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
    return _Parts(boarding, source, link, client)


def _serve(
    config: GateConfig,
    boarding: BoardingGate,
    source: FrameSource,
    stop: threading.Event,
    result_hold_s: float,
    monitor: ServiceMonitor,
) -> int:
    counts = monitor.counts
    camera_failures = 0
    while not stop.is_set():
        result = boarding.process(source)
        if result.outcome == "referred" and result.reason == SOURCE_ENDED:
            if config.camera.kind == "replay":
                log.info("replay source ended")
                break
            camera_failures += 1
            if camera_failures >= MAX_CAMERA_FAILURES:
                log.error("camera gave no frame %d times in a row; exiting", camera_failures)
                return EXIT_CAMERA
            stop.wait(0.5)
            continue
        camera_failures = 0
        if result.outcome == "no_face":
            continue
        counts[result.outcome] += 1
        log.info(
            "traveller: %s (%s)",
            result.outcome,
            result.reason,
            extra={"capture_id": result.capture_id},
        )
        sd_notify.notify(f"STATUS={monitor.status_line()}")
        monitor.mark_dirty()
        stop.wait(result_hold_s)  # the traveller sees the outcome
        if not stop.is_set():
            with contextlib.suppress(Exception):
                boarding.gate.ready()
    return EXIT_OK


def _shutdown(closers: list) -> None:
    """Gate first (refer: relay closed, "see agent"), then link, client, camera."""
    from appliance.gate import GateController

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
    from appliance.journal import setup_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    level = min(logging.getLogger().getEffectiveLevel(), logging.INFO)
    fields = setup_logging(config.device_id, level=level)
    return run_service(config, log_fields=fields)

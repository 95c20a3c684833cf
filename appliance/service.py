"""The on-device service systemd runs (``gatectl run --config FILE``).

Builds the parts from the configuration, opens the flight session, starts the gate,
tells systemd it is ready, then serves travellers one capture window at a time until
stopped. Between transactions it pings the systemd watchdog and publishes a STATUS line.
On the way out the gate is left referring with the relay closed.

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
from pathlib import Path

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
from appliance.hardening import ShutdownRequested, harden_process, install_shutdown_handler

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


class _Watchdog:
    def __init__(self) -> None:
        self.interval = sd_notify.watchdog_interval()
        self._last = time.monotonic()

    def ping(self, force: bool = False) -> None:
        if self.interval is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            sd_notify.notify("WATCHDOG=1")
            self._last = now

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep up to ``seconds`` (until stop), still feeding the watchdog."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = left if self.interval is None else min(left, self.interval)
            stop.wait(step)
            self.ping()


def run_service(
    config: GateConfig,
    stop: threading.Event | None = None,
    *,
    result_hold_s: float = 1.0,
) -> int:
    """Serve travellers until ``stop``, SIGTERM/SIGINT, or the end of a replay source.

    A signal interrupts even a traveller in progress: that capture is purged and
    recorded as "shutdown", nothing more is sent, and the gate is left shut.
    """
    harden_process()
    stop = stop or threading.Event()
    restore_signals = install_shutdown_handler(on_signal=lambda _signum: stop.set())
    closers: list = []
    try:
        try:
            boarding, source = _build(config, closers)
        except StartupError as exc:
            log.error("start-up failed: %s", exc)
            sd_notify.notify(f"STATUS=start-up failed: {exc}")
            return exc.code
        sd_notify.notify("READY=1")
        sd_notify.notify(f"STATUS=serving {_flight_name(config)} as {config.device_id}")
        log.info("gate %s ready for %s", config.device_id, _flight_name(config))
        try:
            return _serve(config, boarding, source, stop, result_hold_s)
        except ShutdownRequested as exc:
            log.info("stopping: %s", exc)
            return EXIT_OK
    finally:
        sd_notify.notify("STOPPING=1")
        _shutdown(closers)
        restore_signals()


def _flight_name(config: GateConfig) -> str:
    f = config.flight
    return f"{f.carrier}{f.number} {f.date} {f.airport}" + (f" gate {f.gate}" if f.gate else "")


def _build(config: GateConfig, closers: list) -> tuple[BoardingGate, FrameSource]:
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
        source = open_source(config.camera)
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
    return boarding, source


def _serve(
    config: GateConfig,
    boarding: BoardingGate,
    source: FrameSource,
    stop: threading.Event,
    result_hold_s: float,
) -> int:
    watchdog = _Watchdog()
    watchdog.ping(force=True)
    counts: Counter[str] = Counter()
    camera_failures = 0
    while not stop.is_set():
        result = boarding.process(source)
        watchdog.ping()
        if result.outcome == "referred" and result.reason == SOURCE_ENDED:
            if config.camera.kind == "replay":
                log.info("replay source ended")
                break
            camera_failures += 1
            if camera_failures >= MAX_CAMERA_FAILURES:
                log.error("camera gave no frame %d times in a row; exiting", camera_failures)
                return EXIT_CAMERA
            watchdog.wait(stop, 0.5)
            continue
        camera_failures = 0
        if result.outcome == "no_face":
            continue
        counts[result.outcome] += 1
        log.info("traveller: %s (%s)", result.outcome, result.reason)
        dropped = getattr(source, "dropped", 0)
        sd_notify.notify(
            "STATUS=served {}: granted {}, referred {}, manual check {}; frames dropped {}".format(
                sum(counts.values()),
                counts["granted"],
                counts["referred"],
                counts["manual_check"],
                dropped,
            )
        )
        watchdog.wait(stop, result_hold_s)  # the traveller sees the outcome
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
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    return run_service(config)

"""The service's parts, built from the configuration in the order they most often fail.

Each failure raises the ``appliance.errors`` start-up error of its kind (which carries the
exit code). What was built before it is in ``closers``, in shutdown order: the scanner
and the screens first (no agent action once shutdown has begun), then the gate (left
referring with the relay closed), then the link, the matcher client and the camera.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import serial

from appliance.custody.audit import default_key_path
from appliance.custody.ledger import PurgeLedger
from appliance.custody.receipts import ReceiptQueue, receipt_queue_path
from appliance.errors import (
    CameraError,
    GateMcuError,
    MatcherSetupError,
    ModelError,
    ScannerError,
    StartupError,
)
from appliance.gate.agents import ACTION_TTL_S, AgentRegistry
from appliance.gate.boarding_log import BoardingLog
from appliance.gate.machine import GateController
from appliance.gate.outcome import TravellerOutcome
from appliance.gate.scanner import DEFAULT_AGENT_PREFIX, ScanParser
from appliance.gate.workflow import GateWorkflow, Mode
from appliance.matching.client import MatchingClient
from appliance.matching.receipt_sender import ReceiptSender
from appliance.pipeline.traveller import TravellerPipeline
from appliance.service.config import GateConfig, ScannerConfig, VisionConfig, check_key_files
from appliance.service.scanner_feed import ScannerFeed
from appliance.service.session import SessionKeeper
from appliance.vision.camera import CameraSpec, FrameSource
from appliance.vision.detectors import Detector, create_detector
from appliance.vision.exposure import face_metered_exposure
from appliance.vision.selection import SelectionRules
from firmware_bridge.host import CommandRejected, GateLink, LinkError
from gate_contract.keys import PkiLayout

log = logging.getLogger("gate.service")


class Closeable(Protocol):
    def close(self) -> None: ...


class Screens(Protocol):
    """The served pages as the serve loop sees them (``screen_feed.RunningScreens``)."""

    @property
    def url(self) -> str: ...

    def traveller_served(self, result: TravellerOutcome) -> None: ...

    def close(self) -> None: ...


@dataclass
class ServiceParts:
    link: GateLink
    gate: GateController
    client: MatchingClient
    detector: Detector
    source: FrameSource
    pipeline: TravellerPipeline
    workflow: GateWorkflow
    agents: AgentRegistry  # signed actions at the scanner, PINs at the agent station
    session: SessionKeeper  # the flight session, reopened as needed
    scanner: ScannerFeed | None = None
    screens: Screens | None = None
    receipts: ReceiptSender | None = None


def vision_parts(
    vision: VisionConfig, models_dir: Path | None = None
) -> tuple[Detector, SelectionRules]:
    """The detector and the selection rules ``[vision]`` asks for (``gatectl bench capture``
    builds them here too, so it measures what the service runs); raises ``ModelError``.
    ``models_dir``: where set-up put the models (default: ``appliance.paths.models_dir()``)."""
    try:
        detector = create_detector(
            vision.runtime,
            vision.model,
            models_dir=models_dir,
            zone_width=vision.zone_width,
            min_score=vision.min_score,
            tracking=vision.tracking,
            exposure_correction=vision.exposure_correction,
        )
    except (ModelError, OSError) as exc:
        raise ModelError(f"face detection model: {exc}") from exc
    rules = SelectionRules(
        steady_frames=vision.steady_frames,
        exposure_correction=vision.exposure_correction,
        attempts=vision.capture_attempts,
    )
    return detector, rules


def build_parts(
    config: GateConfig,
    closers: list[Closeable | GateController],
    open_camera: Callable[[CameraSpec], FrameSource],
) -> ServiceParts:
    """Every part but the scanner; ``closers`` collects what to close, in shutdown order."""
    check_key_files(config)
    vision = config.vision
    detector, rules = vision_parts(vision, config.models_dir)
    try:
        ledger = PurgeLedger(config.ledger_path, default_key_path(config.ledger_path))
    except OSError as exc:
        raise StartupError(f"purge ledger {config.ledger_path}: {exc}") from exc

    port = config.serial.port
    try:
        link = GateLink(port, config.serial.relay_key).open()
    except (LinkError, CommandRejected, ValueError) as exc:
        raise GateMcuError(f"gate MCU on {port}: {exc}") from exc
    closers.append(link)
    gate = GateController(link, pulse_ms=config.serial.pulse_ms)
    try:
        gate.start()
    except (LinkError, CommandRejected) as exc:
        raise GateMcuError(f"gate MCU on {port}: {exc}") from exc
    closers.insert(0, gate)  # from here on, shutdown leaves the gate referring

    pki_dir = config.matcher.pki_dir
    try:
        client = MatchingClient(
            config.matcher.target,
            PkiLayout(pki_dir),
            config.device_id,
            deadline_s=config.matcher.deadline_s,
        )
    except (OSError, ValueError) as exc:
        raise MatcherSetupError(f"device PKI in {pki_dir}: {exc}") from exc
    closers.append(client)
    # An unreachable matcher does not stop the start: the keeper retries, and the gate
    # stays out of service until the session is open (appliance.service.session).
    session = SessionKeeper(client, config.flight, refresh_s=config.session_refresh_s)
    session.open_now()
    closers.insert(0, session.start())
    receipts = _receipt_sender(config, client, ledger)
    closers.insert(closers.index(client), receipts)  # stops before the client closes

    try:
        source = open_camera(config.camera)
    except CameraError as exc:
        raise CameraError(f"camera: {exc}") from exc
    closers.append(source)
    pipeline = TravellerPipeline(
        detector,
        client,
        gate,
        ledger,
        limits=config.quality,
        capture_window_frames=vision.capture_window_frames,
        rules=rules,
        receipts=receipts,
    )
    exposure = face_metered_exposure(source, vision.face_exposure_ev)
    if exposure is not None:
        pipeline.on_capture_progress(exposure)
    try:
        boarding_log = BoardingLog(config.boarding_log_path)
    except OSError as exc:
        raise StartupError(f"boarding log {config.boarding_log_path}: {exc}") from exc
    scanner = config.scanner
    agents = load_agents(config)
    try:  # reads the boarding log and the boarded register back
        workflow = GateWorkflow(
            pipeline,
            config.flight,
            mode=Mode(config.capture_mode),
            boarding_log=boarding_log,
            scanner=ScanParser(
                agent_prefix=scanner.agent_prefix if scanner else DEFAULT_AGENT_PREFIX,
                reference_date=lambda: workflow.flight_date,  # follows a flight change
                agents=agents,
            ),
        )
    except OSError as exc:
        raise StartupError(f"who boarded cannot be read back: {exc}") from exc
    return ServiceParts(
        link, gate, client, detector, source, pipeline, workflow, agents, session,
        receipts=receipts,
    )  # fmt: skip


def _receipt_sender(
    config: GateConfig, client: MatchingClient, ledger: PurgeLedger
) -> ReceiptSender:
    """Receipts owed from before this start are sent again, and so are those of the
    captures the last exit left open (closed now by the ledger)."""
    path = receipt_queue_path(config.ledger_path)
    try:
        queue = ReceiptQueue(path)
    except OSError as exc:
        raise StartupError(f"purge receipt queue {path}: {exc}") from exc
    sender = ReceiptSender(client.report_purge, queue)
    for record in ledger.closed_at_open:
        sender.submit(record)
    sender.start()
    return sender


def load_agents(config: GateConfig) -> AgentRegistry:
    """The unit's agent registry: releases and cancels must name this device, an opt-out
    this device or its airport; the actions used are kept beside the boarding log.

    A damaged registry, or one others can read, stops the start (:class:`ConfigError`).
    """
    ttl = config.agents.action_ttl_s if config.agents else ACTION_TTL_S
    registry = AgentRegistry.load(
        config.agents_path,
        device=config.device_id,
        airport=config.flight.departure_airport,
        ttl_s=ttl,
        used_path=config.boarding_log_path.with_name("agent-actions-used.jsonl"),
    )
    if not registry.agents:
        log.warning(
            "no agents are registered (%s): no agent action can release or cancel at this"
            " gate; register agents with `gatectl agents add`",
            config.agents_path,
        )
    return registry


def start_scanner(
    spec: ScannerConfig,
    closers: list[Closeable | GateController],
    on_line: Callable[[str | bytes], None],
) -> ScannerFeed:
    """Open the configured scanner; it is closed first on the way out (before the gate)."""
    feed = ScannerFeed(spec, on_line)
    try:
        feed.start()
    except (OSError, ValueError, serial.SerialException) as exc:
        raise ScannerError(f"scanner on {spec.port}: {exc}") from exc
    closers.insert(0, feed)  # no scan may reach the gate once shutdown has begun
    return feed


def shut_down(closers: list[Closeable | GateController]) -> None:
    """Close every part in order; the gate is left referring (relay closed, "see agent")."""
    for part in closers:
        try:
            if isinstance(part, GateController):
                part.refer()
            else:
                part.close()
        except Exception as exc:
            log.warning("shutdown: %s: %s", type(part).__name__, exc)


__all__ = [
    "Closeable",
    "Screens",
    "ServiceParts",
    "build_parts",
    "load_agents",
    "shut_down",
    "start_scanner",
    "vision_parts",
]

"""The screens, fed from the running service: the board, the metrics and the web server.

:func:`start_screens` builds the lane board (``appliance.screens.board``) and has it follow
the gate, the capture's progress and the workflow's traveller card; reads the health
behind the agent's alerts and the figures behind ``/metrics`` from the parts at the
moment they are asked for; and starts the web server. The serve loop tells it each
traveller served (:meth:`RunningScreens.traveller_served`) for the latency histograms.
Nothing the screens do can hold up the capture: the gate side only updates the board,
and the pages read it on the web server's own thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.errors import ScreensError
from appliance.gate.agents import load_agent_credentials
from appliance.gate.outcome import TravellerOutcome
from appliance.matching.breaker import CircuitBreaker
from appliance.screens.board import LaneBoard, LaneIdentity
from appliance.screens.lane import Alert
from appliance.screens.metrics import GateFigures, GateMetrics
from appliance.screens.pages import ScreenParts, build_app
from appliance.screens.server import ScreenServer
from appliance.service.config import GateConfig
from appliance.service.monitor import ServiceMonitor

if TYPE_CHECKING:
    from appliance.service.parts import ServiceParts

log = logging.getLogger("gate.service")


@dataclass
class RunningScreens:
    board: LaneBoard
    metrics: GateMetrics
    server: ScreenServer

    @property
    def url(self) -> str:
        return self.server.url

    def traveller_served(self, result: TravellerOutcome) -> None:
        self.metrics.traveller_served(result)

    def close(self) -> None:
        self.server.close()


def start_screens(
    config: GateConfig, parts: ServiceParts, monitor: ServiceMonitor
) -> RunningScreens:
    """Serve the screens of ``config.screens``; :class:`ScreensError` if they cannot be."""
    settings = config.screens
    assert settings is not None
    flight = config.flight
    identity = LaneIdentity(
        device_id=config.device_id,
        gate=flight.gate or config.device_id,
        flight=f"{flight.carrier}{flight.flight_number} {flight.date} {flight.departure_airport}",
        pass_first=config.capture_mode == "pass_then_face",
    )
    ledger = parts.pipeline.ledger
    client, link, gate = parts.client, parts.link, parts.gate

    def health() -> set[Alert]:
        alerts = set()
        if client.breaker.state == CircuitBreaker.OPEN:
            alerts.add(Alert.MATCHER_DOWN)
        if not monitor.healthy:
            alerts.add(Alert.CAMERA_STALLED)
        if not link.link_up:
            alerts.add(Alert.MCU_LINK_LOST)
        if not ledger.durable:
            alerts.add(Alert.LEDGER_NOT_DURABLE)
        return alerts

    def figures() -> GateFigures:
        breaker = client.breaker.state
        return GateFigures(
            travellers={str(k): v for k, v in monitor.counts.items()},
            frames=monitor.heartbeat.frames,
            frames_dropped=monitor.dropped(),
            links={
                "mcu": link.link_up,
                "matcher": breaker == CircuitBreaker.CLOSED,
                "camera": monitor.healthy,
            },
            breaker=breaker,
            ledger_records=ledger.count,
            ledger_durable=ledger.durable,
            state=gate.phase.value,
        )

    board = LaneBoard(
        identity,
        min_inter_eye_px=config.quality.min_inter_eye_px,
        zone_width=config.vision.zone_width,
        card=parts.workflow.card,
        health=health,
    )
    board.follow(gate)
    parts.pipeline.on_capture_progress(board.capture_progress)
    credentials = load_agent_credentials(parts.agents)
    if credentials.pins is None:
        log.warning(
            "no agent has a PIN in %s: nobody can sign in at the agent station"
            " (gatectl agents set-pin)",
            config.agents_path,
        )
    metrics = GateMetrics(figures)
    app = build_app(ScreenParts(board, credentials, parts.workflow, metrics, settings))
    try:
        server = ScreenServer(app, settings, board).start()
    except OSError as exc:
        raise ScreensError(f"screens: {exc}") from exc
    return RunningScreens(board, metrics, server)


__all__ = ["RunningScreens", "start_screens"]

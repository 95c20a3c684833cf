"""The screens during ``gatectl demo --screens``: the production pages, fed by the demo's gate.

The demo's gate machine, capture pipeline and workflow feed a lane board exactly as the
service's do (``appliance.service.screen_feed``); the server is the production one, on
loopback. A demo agent gets a random PIN, printed with the URLs, so the agent station can
be tried: the opt-out traveller waits for the agent's release (or for ``agent_wait_s``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from appliance.custody.ledger import PurgeLedger
from appliance.gate.agents import AgentRegistry, load_agent_credentials, set_pin
from appliance.gate.flight import Flight
from appliance.gate.machine import GateController, State
from appliance.gate.outcome import TravellerOutcome
from appliance.gate.workflow import GateWorkflow
from appliance.pipeline.traveller import TravellerPipeline
from appliance.screens.board import LaneBoard, LaneIdentity
from appliance.screens.metrics import GateFigures, GateMetrics
from appliance.screens.pages import ScreenParts, build_app
from appliance.screens.server import ScreenServer
from appliance.screens.settings import ScreenSettings
from appliance.vision.quality import QualityThresholds
from firmware_bridge.host import GateLink

DEMO_AGENT = "DEMO1"


@dataclass
class DemoScreens:
    board: LaneBoard
    metrics: GateMetrics
    server: ScreenServer
    pin: str
    served: dict[str, int]

    @property
    def url(self) -> str:
        return self.server.url

    def traveller_served(self, result: TravellerOutcome) -> None:
        if result.outcome != "no_face":
            self.served[str(result.outcome)] = self.served.get(str(result.outcome), 0) + 1
        self.metrics.traveller_served(result)

    def close(self) -> None:
        self.server.close()


def start_demo_screens(
    work: Path,
    flight: Flight,
    gate: GateController,
    link: GateLink,
    boarding: TravellerPipeline,
    workflow: GateWorkflow,
    ledger: PurgeLedger,
    port: int = 0,
) -> DemoScreens:
    pin = f"{secrets.randbelow(10**6):06d}"
    while len(set(pin)) == 1:
        pin = f"{secrets.randbelow(10**6):06d}"
    pins = work / "agents.json"
    set_pin(pins, DEMO_AGENT, pin)
    served: dict[str, int] = {}
    board = LaneBoard(
        LaneIdentity(
            "gate-demo",
            flight.gate,
            f"{flight.carrier}{flight.flight_number} {flight.date} {flight.departure_airport}",
            pass_first=False,
        ),
        min_inter_eye_px=QualityThresholds().min_inter_eye_px,
        zone_width=1.0,
        card=workflow.card,
    )
    board.follow(gate)
    boarding.on_capture_progress(board.capture_progress)

    def figures() -> GateFigures:
        return GateFigures(
            travellers=dict(served),
            links={"mcu": link.link_up, "matcher": True, "camera": True},
            ledger_records=ledger.count,
            ledger_durable=ledger.durable,
            state=gate.phase.value,
        )

    metrics = GateMetrics(figures)
    settings = ScreenSettings(port=port)
    credentials = load_agent_credentials(AgentRegistry.load(pins))
    app = build_app(ScreenParts(board, credentials, workflow, metrics, settings))
    server = ScreenServer(app, settings, board).start()
    return DemoScreens(board, metrics, server, pin, served)


def wait_for_agent(gate: GateController, timeout_s: float) -> bool:
    """While a traveller is with the agent: wait for the release or cancel (True)."""
    return gate.wait_for(State.AGENT_RELEASED, State.READY, timeout=timeout_s)


__all__ = ["DEMO_AGENT", "DemoScreens", "start_demo_screens", "wait_for_agent"]

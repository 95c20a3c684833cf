"""Supported test doubles and test data, for this project's tests, benches and simulation.

Production code never carries a test-only path; what a test needs to stand in for a part
lives here, behind the same interface as the real part:

* :class:`FakeLink`: the gate MCU link (``firmware_bridge.host.GateLink``'s commands and
  events), recording every command; ``down`` makes commands fail like a dead line;
* :class:`FakeClock`: a settable clock with a ``sleep`` that advances it;
* :class:`FakeMatcher`: the matching client (``appliance.matching.client.MatchingClient``'s
  ``verify`` and ``report_purge``), answering any decision or error, slowly if asked;
* :class:`Person`, :func:`bcbp`, :func:`make_bcbp`, :func:`damaged`: test travellers and
  their format M boarding passes;
* :class:`TestAgent`: a gate agent with a key of their own, who signs actions the way the
  agent's handheld does, and the registry entry a unit needs to accept them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.errors import VerifyCancelled
from appliance.gate.agents import AgentCommand, AgentEntry, AgentRegistry, hash_pin, sign_action
from appliance.gate.flight import Flight
from appliance.matching.answers import Decision, Verdict
from appliance.vision.feedback import FEEDBACK
from appliance.vision.progress import CaptureProgress
from firmware_bridge.host import CommandRejected, LinkError
from gate_contract.sealing import SealBinding
from matching_service.dev_ca import DEV_DEVICE_ID

TEST_DEVICE = DEV_DEVICE_ID  # the gate the test agents work at

FLIGHT = Flight("BA", "0283", "2026-11-25", "LAX", "B42")


class FakeClock:
    """Monotonic seconds that only move when told (``advance``) or slept through."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLink:
    """Records the gate MCU commands; ``down`` makes them fail like a dead serial line."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[object], None]] = []
        self.calls: list[tuple] = []
        self.down = False
        self.reject_pulse = False
        self.reject_close = 0  # the result the MCU answers RELAY_CLOSE with (0: OK)

    def on_event(self, callback: Callable[[object], None]) -> None:
        self.callbacks.append(callback)

    def emit(self, event: object) -> None:
        """Deliver an MCU event (``OptOutPressed()``, ``DoorChanged(True)``...)."""
        for callback in self.callbacks:
            callback(event)

    def _do(self, *call: object) -> None:
        if self.down:
            raise LinkError("no ACK from MCU")
        self.calls.append(call)

    def hello(self) -> None:
        self._do("hello")

    def close_relay(self) -> None:
        if self.reject_close:
            raise CommandRejected("RELAY_CLOSE", self.reject_close)
        self._do("close")

    def pulse_relay(self, ms: int) -> None:
        if self.reject_pulse:
            raise CommandRejected("RELAY_PULSE", 1)
        self._do("pulse", ms)

    def set_indicator(self, pattern: int) -> None:
        self._do("indicator", pattern)

    @property
    def pulses(self) -> list[tuple]:
        return [c for c in self.calls if c[0] == "pulse"]

    @property
    def indicator(self) -> int | None:
        shown = [c[1] for c in self.calls if c[0] == "indicator"]
        return shown[-1] if shown else None


class FakeMatcher:
    """``answer``: a :class:`Decision`, an exception to raise, or None (wait until cancelled).

    ``during`` is called while "the service works"; ``verifying`` is set once a verify
    started; every boarding pass and purge receipt it was given is kept.
    """

    device_id = DEV_DEVICE_ID

    def __init__(
        self,
        answer: Decision | Exception | None = Decision.MATCH,
        during: Callable[[], object] | None = None,
        wait_s: float = 10.0,
    ) -> None:
        self.sealing_key = X25519PrivateKey.generate().public_key()
        self.answer = answer
        self.during = during
        self.wait_s = wait_s
        self.verifying = threading.Event()
        self.passes: list[str] = []
        self.receipts: list[object] = []
        self.cancelled_seen = False

    session_id = "fake-session"

    def binding(self, capture_id: str, captured_at_ms: int, boarding_pass: str = "") -> SealBinding:
        return SealBinding(
            capture_id, self.device_id, self.session_id, captured_at_ms, boarding_pass
        )

    def verify(
        self,
        capture_id: str,
        captured_at_ms: int,
        sealed: bytearray,
        boarding_pass: str = "",
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> Verdict:
        self.passes.append(boarding_pass)
        self.verifying.set()
        if self.during:
            self.during()
        if self.answer is None:
            deadline = time.monotonic() + self.wait_s
            while time.monotonic() < deadline:
                if cancelled is not None and cancelled():
                    self.cancelled_seen = True
                    raise VerifyCancelled("cancelled while waiting for the verdict")
                time.sleep(0.005)
            raise AssertionError("verify was never cancelled")
        if isinstance(self.answer, Exception):
            raise self.answer
        decision = Decision(self.answer)
        token = "tok-123" if decision is Decision.MATCH else ""
        return Verdict(capture_id, self.device_id, decision, token, int(time.time() * 1000))

    def report_purge(self, record: object) -> bool:
        self.receipts.append(record)
        return True


class TestAgent:
    """A registered gate agent for tests and the simulation."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, agent_id: str = "A1", scope: str = "LAX", pin: str = "", device: str = TEST_DEVICE
    ) -> None:
        self.agent_id = agent_id
        self.scope = scope  # the airport an opt-out names
        self.device = device  # the gate a release or cancel names
        self.key = Ed25519PrivateKey.generate()
        self.pin_hash = hash_pin(pin) if pin else ""

    @property
    def entry(self) -> AgentEntry:
        return AgentEntry(self.agent_id, self.key.public_key(), self.pin_hash)

    def action(
        self,
        command: str,
        *,
        issued_s: int | None = None,
        prefix: str = "AGT:",
        scope: str | None = None,
    ) -> str:
        """The barcode of a signed ``command`` (RELEASE, CANCEL, OPTOUT), made now, for this
        agent's gate (a release or cancel) or airport (an opt-out) unless ``scope`` says."""
        command_kind = AgentCommand(command)
        if scope is None:
            scope = self.scope if command_kind is AgentCommand.OPTOUT else self.device
        return sign_action(
            self.key, self.agent_id, command_kind, scope, issued_s=issued_s, prefix=prefix
        )

    def registry(
        self, *others: TestAgent, airport: str = "LAX", device: str = TEST_DEVICE
    ) -> AgentRegistry:
        """A registry that knows this agent (and ``others``) at gate ``device``."""
        agents = {a.agent_id: a.entry for a in (self, *others)}
        return AgentRegistry(agents, device=device, airport=airport)


def make_bcbp(
    name: str,
    pnr: str,
    *,
    origin: str = "LAX",
    destination: str = "LHR",
    carrier: str = "BA",
    flight: str = "0283",
    julian_day: int = 329,
    seat: str = "012A",
    sequence: int = 1,
) -> str:
    """A one-leg format M boarding pass (day 329 of 2026 is 2026-11-25)."""
    return (
        f"M1{name[:20]:<20}E{pnr[:7]:<7}{origin:<3}{destination:<3}{carrier:<3}"
        f"{flight:<5}{julian_day:03d}Y{seat:<4}{sequence:04d} 100"
    )


@dataclass(frozen=True)
class Person:
    key: str
    name: str  # as on the pass: SURNAME/GIVEN, at most 20 characters
    pnr: str
    document: Path
    live: tuple[Path, ...]
    enrolled: bool
    extra_documents: tuple[Path, ...] = ()  # more document photos (visa, earlier encounters)

    @property
    def documents(self) -> tuple[Path, ...]:
        return (self.document, *self.extra_documents)


def bcbp(person: Person, sequence: int, flight: Flight = FLIGHT, seat: str = "012A") -> str:
    """A one-leg format M boarding pass for ``person`` on ``flight``."""
    day = time.strptime(flight.date, "%Y-%m-%d").tm_yday
    return make_bcbp(
        person.name,
        person.pnr,
        origin=flight.departure_airport,
        carrier=flight.carrier,
        flight=flight.flight_number,
        julian_day=day,
        seat=seat,
        sequence=sequence,
    )


def damaged(text: str) -> str:
    """The same pass with its Julian date smudged: unreadable."""
    return text[:44] + "X?Z" + text[47:]


def capture_progress(
    failure: str | None,
    box: tuple[float, float, float, float] | None = (0.45, 0.3, 0.55, 0.48),
    faces: int = 1,
    frame_size: tuple[int, int] = (1280, 720),
    min_inter_eye_px: float = 28.0,
) -> CaptureProgress:
    """One frame of a capture as the selection reports it; ``box`` in fractions of the
    frame (converted to pixels), eyes and the other keypoints placed inside it."""
    width, height = frame_size
    points = None
    pixels = None
    if box is not None:
        x0, y0, x1, y1 = box
        fractions = (
            (x0 + 0.3 * (x1 - x0), y0 + 0.35 * (y1 - y0)),
            (x0 + 0.7 * (x1 - x0), y0 + 0.35 * (y1 - y0)),
            ((x0 + x1) / 2, y0 + 0.55 * (y1 - y0)),
            ((x0 + x1) / 2, y0 + 0.8 * (y1 - y0)),
            (x0, y0 + 0.45 * (y1 - y0)),
            (x1, y0 + 0.45 * (y1 - y0)),
        )
        points = tuple((x * width, y * height) for x, y in fractions)
        pixels = (x0 * width, y0 * height, x1 * width, y1 * height)
    failures = (failure,) if failure and failure != "no_face" else ()
    return CaptureProgress(
        frame=1,
        frame_size=frame_size,
        box=pixels,
        keypoints=points,
        faces=faces,
        feedback=FEEDBACK.get(failure) if failure else None,
        failures=failures,
        score=50.0,
        face_grey=120.0 if box is not None else None,
        steady_frames=0,
        steady_needed=2,
        min_inter_eye_px=min_inter_eye_px,
        search="zone",
        captured=False,
        vision_ms=1.0,
        vision_cpu_ms=1.0,
    )


__all__ = [
    "FLIGHT",
    "TEST_DEVICE",
    "FakeClock",
    "FakeLink",
    "FakeMatcher",
    "Person",
    "TestAgent",
    "bcbp",
    "capture_progress",
    "damaged",
    "make_bcbp",
]

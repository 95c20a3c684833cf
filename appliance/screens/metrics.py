"""Prometheus metrics of one gate, for a fleet watched by an existing Prometheus/Grafana.

Served at ``/metrics`` by the screens' web server (``prometheus_client``'s ASGI app, in
a registry of this gate's own). Two kinds of figures:

* observed as they happen: capture and verify latency per traveller, the time of the
  last verify that got a verdict, agent actions, refused web requests, open screens;
* read at scrape time from the running parts (:class:`GateFigures`, a callable the
  service hands in): travellers by outcome, frames and dropped frames, link states,
  the matcher's circuit breaker, purge-ledger records and whether the ledger is
  durable, the gate's state. Nothing is counted twice, and the capture loop pays
  nothing for a scrape.

``process_start_time_seconds`` (the process collector) tells watchdog restarts apart.
No figure holds a traveller's data: labels are fixed words, values are numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.gate.machine import State
from appliance.gate.outcome import TravellerOutcome

CAPTURE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
VERIFY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0)
BREAKER_STATES = ("closed", "half_open", "open")
_VERDICT_EVENTS = frozenset({"match", "no_match", "not_on_flight", "unusable"})


@dataclass(frozen=True)
class GateFigures:
    """What the running parts say at scrape time."""

    travellers: Mapping[str, int] = field(default_factory=dict)  # outcome -> count
    frames: int = 0
    frames_dropped: int = 0
    links: Mapping[str, bool] = field(default_factory=dict)  # mcu, matcher, camera -> up
    breaker: str = "closed"
    ledger_records: int = 0
    ledger_durable: bool = True
    state: str = State.OUT_OF_SERVICE.value


class _Live(Collector):
    def __init__(self, figures: Callable[[], GateFigures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self._figures()
        travellers = CounterMetricFamily(
            "gate_travellers", "Travellers served, by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(f.travellers.items()):
            travellers.add_metric([outcome], count)
        yield travellers
        yield CounterMetricFamily("gate_frames", "Camera frames processed", value=f.frames)
        yield CounterMetricFamily(
            "gate_frames_dropped", "Camera frames dropped (newest frame wins)", f.frames_dropped
        )
        links = GaugeMetricFamily("gate_link_up", "1 if the link is up", labels=["link"])
        for name, up in sorted(f.links.items()):
            links.add_metric([name], 1.0 if up else 0.0)
        yield links
        breaker = GaugeMetricFamily(
            "gate_matcher_breaker_state",
            "The matching client's circuit breaker (1 for its current state)",
            labels=["state"],
        )
        for state in BREAKER_STATES:
            breaker.add_metric([state], 1.0 if f.breaker == state else 0.0)
        yield breaker
        yield GaugeMetricFamily(
            "gate_ledger_records", "Records in the purge ledger", value=f.ledger_records
        )
        yield GaugeMetricFamily(
            "gate_ledger_durable",
            "1 while purge-ledger records are being made durable",
            value=1.0 if f.ledger_durable else 0.0,
        )
        gate = GaugeMetricFamily(
            "gate_state", "The gate's state (1 for the current one)", labels=["state"]
        )
        for state in State:
            gate.add_metric([state.value], 1.0 if f.state == state.value else 0.0)
        yield gate


class GateMetrics:
    """This gate's metrics registry; ``figures`` is read at every scrape."""

    def __init__(self, figures: Callable[[], GateFigures] = GateFigures) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.capture_seconds = Histogram(
            "gate_capture_seconds",
            "Capture window start to sealed frame, per capture sent (a retake is one more)",
            buckets=CAPTURE_BUCKETS,
            registry=r,
        )
        self.verify_seconds = Histogram(
            "gate_verify_seconds",
            "Frame sent to verdict (or its failure), per capture sent (a retake is one more)",
            buckets=VERIFY_BUCKETS,
            registry=r,
        )
        self.last_verify = Gauge(
            "gate_last_verify_success_timestamp_seconds",
            "When the matching service last answered a verify with a verdict (Unix time)",
            registry=r,
        )
        self.retaken = Counter(
            "gate_captures_retaken",
            "Captures the matcher did not verify, followed by another one sent of the same"
            " traveller (a second look that found no nearer face is not counted)",
            registry=r,
        )
        self.agent_actions = Counter(
            "gate_agent_actions", "Agent station actions taken", ["action"], registry=r
        )
        self.login_failures = Counter(
            "gate_agent_login_failures", "Refused agent sign-ins", ["reason"], registry=r
        )
        self.refused_requests = Counter(
            "gate_web_requests_refused", "Web requests refused", ["reason"], registry=r
        )
        self.screen_clients = Gauge(
            "gate_screen_clients", "Pages following a live stream", ["page"], registry=r
        )
        r.register(_Live(figures))
        ProcessCollector(registry=r)

    def traveller_served(self, result: TravellerOutcome, at: float | None = None) -> None:
        if result.earlier_capture_ids:
            self.retaken.inc(len(result.earlier_capture_ids))
        for capture_ms, verify_ms in result.earlier_timings:
            self.capture_seconds.observe(capture_ms / 1000)
            self.verify_seconds.observe(verify_ms / 1000)
        if result.capture_ms is not None:
            self.capture_seconds.observe(result.capture_ms / 1000)
        if result.verify_ms is not None:
            self.verify_seconds.observe(result.verify_ms / 1000)
            if result.event in _VERDICT_EVENTS:
                self.last_verify.set(time.time() if at is None else at)


__all__ = ["BREAKER_STATES", "CAPTURE_BUCKETS", "VERIFY_BUCKETS", "GateFigures", "GateMetrics"]

"""Is the capture pipeline alive? The systemd watchdog is fed only while it is.

Every frame the serve loop takes from the camera beats a :class:`PipelineHeartbeat`
(through :class:`BeatingSource`). A :class:`WatchdogFeeder` thread sends ``WATCHDOG=1``
each half ``WatchdogSec`` only while the last beat is younger than ``[service] stall_s``:
a stuck camera thread, a dead camera or a wedged serve loop all stop the beats, so the
pings stop and systemd restarts the service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from appliance.service import sd_notify
from appliance.vision.camera import FrameSource

log = logging.getLogger("gate.service")


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


class BeatingSource:
    """The camera source as the serve loop sees it: every frame taken beats the heartbeat."""

    def __init__(self, source: FrameSource, heartbeat: PipelineHeartbeat) -> None:
        self.source = source
        self.heartbeat = heartbeat

    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", False))

    def read(self) -> np.ndarray | None:
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


__all__ = ["BeatingSource", "PipelineHeartbeat", "WatchdogFeeder"]

"""A background reader that keeps only the newest camera frame.

A camera delivers frames whether or not anyone is looking; reading them on the caller's
thread means the caller sees stale frames from the driver's queue after any pause (a
slow detector pass, a matcher round trip). ``FramePump`` reads continuously on its own
thread into a single slot: the newest frame wins, and a frame replaced before anyone
took it is zeroized at once and counted in ``dropped``. ``get()`` hands the newest frame
over; from then on the caller owns it and zeroizes it, as with any ``FrameSource``.

``FramePump`` is itself a ``FrameSource`` (``read()``/``close()``), so the
``FrameSelector`` and ``TravellerPipeline`` can use it directly.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from appliance.vision.camera import CameraSpec, FrameSource, ReplaySource, live_camera

log = logging.getLogger("gate.camera.pump")


class FramePump:
    """Reads ``source`` continuously on a daemon thread, keeping only the newest frame.

    ``None`` from the source means "ended" for a replay (``ended`` is set and the thread
    stops) and "no frame now" for a live source (the thread waits ``idle`` seconds and
    reads again). A source is live when ``live`` says so, or by default when it has a
    true ``live`` attribute (``ReconnectingSource``). An exception from the source ends
    the pump too, with the text in ``last_error``.

    The source is used only by the pump thread, which closes it on the way out; a live
    source's ``close()`` must be safe to call from another thread (``ReconnectingSource``'s
    is), since ``close()`` calls it first to cut short a reconnect wait.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        name: str = "camera",
        read_timeout: float = 1.0,
        idle: float = 0.01,
        join_timeout: float = 5.0,
        live: bool | None = None,
    ) -> None:
        self.source = source
        self.name = name
        self.read_timeout = read_timeout
        self.live = bool(getattr(source, "live", False)) if live is None else live
        self._idle = idle
        self._join_timeout = join_timeout
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._slot: np.ndarray | None = None
        self._frames_read = 0
        self._dropped = 0
        self._ended = False
        self._closed = False
        self._source_lock = threading.Lock()
        self._source_closed = False
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"frame-pump-{name}", daemon=True)
        self._thread.start()

    # -- metrics -------------------------------------------------------------------------

    @property
    def frames_read(self) -> int:
        """Frames the pump took from the source."""
        with self._cond:
            return self._frames_read

    @property
    def dropped(self) -> int:
        """Frames replaced in the slot (or arriving at close) before anyone took them."""
        with self._cond:
            return self._dropped

    @property
    def ended(self) -> bool:
        """The source ended (a replay ran out) or failed; no more frames will come."""
        with self._cond:
            return self._ended

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # -- consumer side -------------------------------------------------------------------

    def get(self, timeout: float) -> np.ndarray | None:
        """The newest frame, waiting up to ``timeout`` s for one; ``None`` if none came.

        Returns ``None`` at once when the pump has ended or closed and the slot is empty.
        The caller owns the returned frame (and zeroizes it when done).
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._slot is not None or self._ended or self._closed, timeout
            )
            frame, self._slot = self._slot, None
            return frame

    def read(self) -> np.ndarray | None:
        return self.get(self.read_timeout)

    @property
    def controls_exposure(self) -> bool:
        return bool(getattr(self.source, "controls_exposure", False))

    def set_exposure_compensation(self, ev: float) -> None:
        """Passed on to the source (``ReconnectingSource``'s is thread-safe); a source
        without exposure control ignores it."""
        control = getattr(self.source, "set_exposure_compensation", None)
        if control is not None:
            control(ev)

    def close(self) -> None:
        """Stop the thread, zeroize the frame still in the slot and close the source."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._stop.set()
        if self.live:
            self._close_source()  # wakes a reconnect wait in the pump thread
        self._thread.join(self._join_timeout)
        if self._thread.is_alive():
            # Stuck inside the source's read; the thread closes the source and
            # zeroizes that frame when the read returns.
            log.warning("%s pump did not stop within %.1fs", self.name, self._join_timeout)
        with self._cond:
            if self._slot is not None:
                self._slot.fill(0)
                self._slot = None

    def __enter__(self) -> FramePump:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- pump thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.source.read()
                except Exception as exc:  # ends the pump; the consumer sees None
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("%s source failed: %s", self.name, self.last_error)
                    self._end()
                    return
                if frame is None:
                    if not self.live:
                        self._end()
                        return
                    self._stop.wait(self._idle)
                    continue
                self._offer(frame)
        finally:
            self._close_source()

    def _offer(self, frame: np.ndarray) -> None:
        with self._cond:
            self._frames_read += 1
            if self._closed:
                frame.fill(0)  # nobody will take it
                self._dropped += 1
                return
            if self._slot is not None:
                self._slot.fill(0)  # superseded before anyone took it
                self._dropped += 1
            self._slot = frame
            self._cond.notify_all()

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _close_source(self) -> None:
        with self._source_lock:
            if self._source_closed:
                return
            self._source_closed = True
        try:
            self.source.close()
        except Exception as exc:
            log.warning("closing %s source: %s", self.name, exc)


def open_source(spec: CameraSpec) -> FrameSource:
    """The camera source the configuration names (raises CameraError).

    A live camera reconnects by itself after a drop-out and runs behind a frame pump,
    so the vision stage never blocks it: the newest frame wins, older ones are zeroized
    and counted as dropped.
    """
    if spec.kind == "replay":
        return ReplaySource(Path(spec.target), canvas=spec.size, repeat=spec.repeat)
    return FramePump(live_camera(spec.kind, spec.target, spec.size))


__all__ = ["FramePump", "open_source"]

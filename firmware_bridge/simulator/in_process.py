"""The firmware core on CPython, in this process: the fast backend (see ``backends``)."""

from __future__ import annotations

import os
import time

from firmware_bridge.mcu.firmware import FirmwareCore
from firmware_bridge.protocol import Indicator
from firmware_bridge.simulator.backends import (
    DETERMINISTIC_SEED,
    FirmwareOutputs,
    FirmwareState,
    seeded_random_bytes,
)


class SimHal:
    """In-memory hardware: relay, indicator and buzzer into ``outputs``; the relay state
    (epoch, counter) in a field that survives a reboot, like flash."""

    def __init__(self, outputs: FirmwareOutputs, manual_clock: bool) -> None:
        self.outputs = outputs
        self.relay_open = False
        self.indicator_pattern = Indicator.OUT_OF_SERVICE
        self.stored_counter = (0, 0)  # (epoch, counter)
        self.manual_ms: int | None = 1_000_000 if manual_clock else None
        self._draws = 0

    def relay(self, open_: bool) -> None:
        if bool(open_) != self.relay_open:
            self.outputs.relay_history.append(bool(open_))
        self.relay_open = bool(open_)

    def indicator(self, pattern: int) -> None:
        self.indicator_pattern = pattern

    def buzzer(self, ms: int) -> None:
        self.outputs.buzzes.append(ms)

    def now_ms(self) -> int:
        if self.manual_ms is not None:
            return self.manual_ms
        return int(time.monotonic() * 1000)

    def random_bytes(self, n: int) -> bytes:
        if self.manual_ms is None:
            return os.urandom(n)
        self._draws += 1
        return seeded_random_bytes(DETERMINISTIC_SEED, self._draws, n)

    def load_counter(self) -> tuple[int, int]:
        return self.stored_counter

    def store_counter(self, epoch: int, counter: int) -> None:
        self.stored_counter = (epoch, counter)

    def on_pulse(self, duration_ms: int) -> None:
        self.outputs.relay_pulses.append(duration_ms)


class InProcessFirmware:
    """:class:`FirmwareCore` over :class:`SimHal`; a reboot is a new core on the same HAL."""

    interpreter = "cpython"

    def __init__(
        self,
        hmac_key: bytes,
        *,
        heartbeat_timeout_ms: int = 1000,
        max_pulse_ms: int = 5000,
        manual_clock: bool = False,
    ) -> None:
        self._key = bytes(hmac_key)
        self._heartbeat_timeout_ms = heartbeat_timeout_ms
        self._max_pulse_ms = max_pulse_ms
        self.outputs = FirmwareOutputs()
        self._hal = SimHal(self.outputs, manual_clock)
        self._core = self._new_core()  # checks the key now, as the board would at start
        self._rx_errors_before_reset = 0

    def _new_core(self) -> FirmwareCore:
        return FirmwareCore(
            self._hal,
            self._key,
            heartbeat_timeout_ms=self._heartbeat_timeout_ms,
            max_pulse_ms=self._max_pulse_ms,
        )

    @property
    def state(self) -> FirmwareState:
        core = self._core
        return FirmwareState(
            relay_open=self._hal.relay_open,
            indicator=self._hal.indicator_pattern,
            session=core.session,
            last_counter=core.last_counter,
            epoch=core.epoch,
            rx_errors=self._rx_errors_before_reset + core.decoder.dropped,
            duplicates=core.duplicates,
            door_open=core.door_open,
        )

    def boot(self, reset_cause: int) -> bytes:
        self._rx_errors_before_reset += self._core.decoder.dropped
        self._core = self._new_core()
        return self._core.boot(reset_cause)

    def feed(self, data: bytes) -> bytes:
        return self._core.feed(data)

    def tick(self, advance_ms: int = 0) -> bytes:
        if advance_ms:
            if self._hal.manual_ms is None:
                raise ValueError("the clock only advances by itself")
            self._hal.manual_ms += advance_ms
        return self._core.tick()

    def press_opt_out(self) -> bytes:
        return self._core.press_opt_out()

    def set_door(self, open_: bool) -> bytes:
        return self._core.set_door(open_)

    def close(self) -> None:
        """Nothing to release: the core lives in this process."""


__all__ = ["InProcessFirmware", "SimHal"]

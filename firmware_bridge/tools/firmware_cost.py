"""The firmware core's own cost per received frame and per tick, on the interpreter it runs on.

Runs unchanged on CPython, inside MicroPython's webassembly port (``gatectl bench
firmware`` loads it there next to the firmware) and on a board (``mpremote run`` it once
the firmware is deployed). No serial line, no host: a null HAL and a manual clock, so
only the firmware's own work is timed (COBS, CRC-16, parsing, HMAC-SHA256, state).

Timing: means over batches with ``time.ticks_us`` where it exists. Pitfall: in the
webassembly port ``ticks_us`` advances in 1 ms steps (it is built on a millisecond
clock), so batches are long (tens of ms) and only batch means are reported, never
single-call samples; on a board ``ticks_us`` is exact to 1 us.

``reference_us`` times a fixed loop of plain integer and bytes work; ``gatectl bench
firmware`` scales the figures to an RP2040 with it (see ``firmware_bridge.tools.
firmware_bench``). No type hints: MicroPython has no ``typing``.
"""

import json
import sys

from firmware_bridge.mcu.firmware import FirmwareCore
from firmware_bridge.protocol import Frame, MsgType, pack_relay_pulse

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b


KEY = b"bench-key-0123456789abcdef012345"
BATCHES = 7


class NullHal:
    """Outputs go nowhere, the counter stays in RAM, time only moves when told."""

    def __init__(self):
        self.t = 1_000_000
        self.counter = 0

    def relay(self, open_):
        pass

    def indicator(self, pattern):
        pass

    def buzzer(self, ms):
        pass

    def now_ms(self):
        return self.t

    def load_counter(self):
        return self.counter

    def store_counter(self, counter):
        self.counter = counter


def _session():
    hal = NullHal()
    core = FirmwareCore(hal, KEY, heartbeat_timeout_ms=1 << 30)
    core.boot()
    core.feed(Frame(MsgType.HELLO, 0).encode())
    return hal, core


def _batch_mean_us(call, items):
    t0 = ticks_us()
    for item in items:
        call(item)
    return ticks_diff(ticks_us(), t0) / len(items)


def _summary(means):
    means = sorted(means)
    return {
        "median": round(means[len(means) // 2], 2),
        "min": round(means[0], 2),
        "max": round(means[-1], 2),
    }


def reference_work(iterations):
    """The fixed loop the RP2040 scaling is based on: integer and bytes work."""
    data = bytes(range(64))
    acc = 0
    for _ in range(iterations):
        for byte in data:
            acc = (acc * 31 + byte) & 0xFFFF
    return acc


def measure(frames=2000):
    """-> dict of batch means in microseconds (median, min and max over BATCHES)."""
    heartbeat, pulse, garbage, tick, reference = [], [], [], [], []
    hb_frames = [Frame(MsgType.HEARTBEAT, 1 + i % 250).encode() for i in range(frames)]
    bad = bytearray(hb_frames[0])
    bad[2] ^= 0x01  # CRC no longer matches: decoded, checked, dropped
    bad_frames = [bytes(bad)] * frames
    counter = 0
    for _ in range(BATCHES):
        hal, core = _session()
        heartbeat.append(_batch_mean_us(core.feed, hb_frames))
        pulses = []
        for i in range(frames // 4):  # HMAC per frame: fewer, so a batch stays short
            counter += 1
            payload = pack_relay_pulse(KEY, 300, counter)
            pulses.append(Frame(MsgType.RELAY_PULSE, 1 + i % 250, payload).encode())
        pulse.append(_batch_mean_us(core.feed, pulses))
        garbage.append(_batch_mean_us(core.feed, bad_frames))

        def one_tick(_, hal=hal, core=core):
            hal.t += 10  # the link never times out (heartbeat_timeout_ms above)
            core.tick()

        tick.append(_batch_mean_us(one_tick, range(frames)))
        reference.append(_batch_mean_us(reference_work, [50] * 20) / 50)
    return {
        "interpreter": sys.implementation.name,
        "heartbeat_frame_us": _summary(heartbeat),
        "relay_pulse_frame_us": _summary(pulse),
        "bad_crc_frame_us": _summary(garbage),
        "tick_us": _summary(tick),
        "reference_us": _summary(reference),
        "frames_per_batch": frames,
        "batches": BATCHES,
    }


def handle(line):
    """``micropython_runner.mjs`` entry: ``measure <frames>`` -> one JSON line."""
    op, _, arg = line.strip().partition(" ")
    if op != "measure":
        return json.dumps({"error": "unknown request " + op})
    return json.dumps(measure(int(arg or "2000")))


if __name__ == "__main__":  # on a board: mpremote run firmware_bridge/tools/firmware_cost.py
    print(json.dumps(measure(400)))


__all__ = ["BATCHES", "KEY", "NullHal", "handle", "measure", "reference_work"]

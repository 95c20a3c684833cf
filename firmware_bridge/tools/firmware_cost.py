"""The firmware core's own cost per received frame and per tick, on the interpreter it runs on.

Runs unchanged on CPython, inside MicroPython's webassembly port (``gatectl bench
firmware`` loads it there next to the firmware) and on a board (``mpremote run`` it once
the firmware is deployed). No serial line, no host: a null HAL and a manual clock, so
only the firmware's own work is timed (COBS, CRC-16, parsing, HMAC-SHA256, state).
``tag_check_us`` is the authentication alone (one session command's HMAC and the
constant-time compare): what protocol version 2 adds to every heartbeat, relay close,
indicator and buzzer command, and to every STATUS the MCU sends.

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
from firmware_bridge.protocol import (
    Frame,
    FrameDecoder,
    LinkKeys,
    MsgType,
    command_tag,
    ct_equal,
    pack_indicator,
    pack_relay_pulse,
    pack_session_command,
    unpack_status,
)

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
        self.state = (0, 0)
        self.draws = 0

    def relay(self, open_):
        pass

    def indicator(self, pattern):
        pass

    def buzzer(self, ms):
        pass

    def now_ms(self):
        return self.t

    def random_bytes(self, n):
        self.draws += 1
        return bytes([self.draws & 0xFF]) * n

    def load_counter(self):
        return self.state

    def store_counter(self, epoch, counter):
        self.state = (epoch, counter)


def _session():
    """-> (hal, core, session id): a core in a session that never times out."""
    hal = NullHal()
    core = FirmwareCore(hal, KEY, heartbeat_timeout_ms=1 << 30)
    core.boot()
    replies = FrameDecoder().feed(core.feed(Frame(MsgType.HELLO, 0, bytes(8)).encode()))
    return hal, core, unpack_status(replies[1].payload)[5]


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


def _commands(keys, session, msg_type, body, frames):
    return [
        Frame(
            msg_type, 1 + i % 250, pack_session_command(keys, msg_type, session, i + 1, body)
        ).encode()
        for i in range(frames)
    ]


def measure(frames=2000):
    """-> dict of batch means in microseconds (median, min and max over BATCHES)."""
    keys = LinkKeys(KEY)
    names = ("heartbeat", "indicator", "status", "pulse", "garbage", "tag", "tick", "reference")
    times = {name: [] for name in names}
    bad = bytearray(Frame(MsgType.HEARTBEAT, 1, bytes(20)).encode())
    bad[2] ^= 0x01  # CRC no longer matches: decoded, checked, dropped
    bad_frames = [bytes(bad)] * frames
    requests = [
        Frame(MsgType.STATUS_REQUEST, 1 + i % 250, bytes(8)).encode() for i in range(frames)
    ]
    counter = 0
    for _ in range(BATCHES):
        hal, core, session = _session()
        heartbeats = _commands(keys, session, MsgType.HEARTBEAT, b"", frames)
        times["heartbeat"].append(_batch_mean_us(core.feed, heartbeats))
        hal, core, session = _session()
        lights = _commands(keys, session, MsgType.INDICATOR, pack_indicator(1), frames)
        times["indicator"].append(_batch_mean_us(core.feed, lights))
        times["status"].append(_batch_mean_us(core.feed, requests))
        pulses = []
        for i in range(frames // 4):  # a flash-free NullHal, but fewer: batches stay short
            counter += 1
            payload = pack_relay_pulse(keys, 0, 300, counter)
            pulses.append(Frame(MsgType.RELAY_PULSE, 1 + i % 250, payload).encode())
        hal, core, session = _session()
        hal.state = (0, counter - len(pulses))
        core.last_counter = counter - len(pulses)
        times["pulse"].append(_batch_mean_us(core.feed, pulses))
        times["garbage"].append(_batch_mean_us(core.feed, bad_frames))
        tag = command_tag(keys, MsgType.HEARTBEAT, session, 1, b"")

        def check(_, keys=keys, session=session, tag=tag):
            ct_equal(tag, command_tag(keys, MsgType.HEARTBEAT, session, 1, b""))

        times["tag"].append(_batch_mean_us(check, range(frames)))

        def one_tick(_, hal=hal, core=core):
            hal.t += 10  # the link never times out (heartbeat_timeout_ms above)
            core.tick()

        times["tick"].append(_batch_mean_us(one_tick, range(frames)))
        times["reference"].append(_batch_mean_us(reference_work, [50] * 20) / 50)
    return {
        "interpreter": sys.implementation.name,
        "heartbeat_frame_us": _summary(times["heartbeat"]),
        "indicator_frame_us": _summary(times["indicator"]),
        "status_request_frame_us": _summary(times["status"]),
        "relay_pulse_frame_us": _summary(times["pulse"]),
        "bad_crc_frame_us": _summary(times["garbage"]),
        "tag_check_us": _summary(times["tag"]),
        "tick_us": _summary(times["tick"]),
        "reference_us": _summary(times["reference"]),
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

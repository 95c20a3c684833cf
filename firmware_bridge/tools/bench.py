"""Serial link benchmark and firmware fuzzing, for ``gatectl bench serial``.

:func:`bench_serial` measures command round trips between :class:`GateLink`
and the :class:`Simulator` over a real pseudo-terminal, then fuzzes the
firmware directly (no serial line, so it is fast) with random, truncated,
concatenated, bit-flipped, replayed and forged frames and counts how often the
relay opened.  That count must be 0; the same :class:`FuzzHarness` opens the
relay for a genuine fresh pulse, which proves the counter is live.  Both run on
the interpreter asked for (CPython by default, or MicroPython).
"""

import hashlib
import math
import os
import random
import struct
import time

from firmware_bridge.host import GateLink
from firmware_bridge.protocol import (
    MAX_PAYLOAD,
    NONCE_LEN,
    STATUS_BODY_LEN,
    TAG_LEN,
    Frame,
    FrameDecoder,
    Indicator,
    LinkKeys,
    MsgType,
    ResetCause,
    Result,
    cobs_encode,
    crc16_ccitt_false,
    pack_buzzer,
    pack_indicator,
    pack_relay_pulse,
    pack_session_command,
    relay_tag,
    unpack_ack,
)
from firmware_bridge.simulator import Simulator, open_firmware
from firmware_bridge.tools.host_frames import HostFrames

BAUDRATE = 115200


def _uart_wire_ms(baudrate: int) -> float:
    """Mean bytes-on-the-wire time of one bench round on a real UART (8N1 = 10 bits
    per byte).  A pty has no baud rate, so the measured RTT excludes this."""
    ack = len(Frame(MsgType.ACK, 0, bytes(2)).encode())
    status = len(Frame(MsgType.STATUS, 0, bytes(STATUS_BODY_LEN + TAG_LEN)).encode())
    indicator = len(Frame(MsgType.INDICATOR, 0, bytes(1 + 4 + TAG_LEN)).encode()) + ack
    status_req = len(Frame(MsgType.STATUS_REQUEST, 0, bytes(NONCE_LEN)).encode()) + ack + status
    return (indicator + status_req) / 2 * 10 / baudrate * 1000


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# ---------------------------------------------------------------------- fuzzing


class FuzzHarness:
    """The firmware in an established session, fed hostile input.

    It runs on either interpreter (``backends.open_firmware``) with a manual clock, so a
    seed replays the same run: the gate's key is derived from the seed too (unless given),
    because version 2's STATUS frames carry tags under it, so the same seed gives the same
    bytes on both interpreters (``fuzz_transmitted_sha256``). Setup performs a few genuine
    pulses (so there are captured frames to replay) and lets them end;
    :attr:`relay_opened` counts openings after setup only. Close it (or use it as a
    context manager) to end a MicroPython interpreter.
    """

    SETUP_PULSES = 4
    ATTACKER = LinkKeys(b"attacker-key-0123456789abcdef!!!")

    def __init__(
        self, key: bytes | None = None, seed: int = 0, interpreter: str = "cpython"
    ) -> None:
        self.key = key if key is not None else hashlib.sha256(b"fuzz key %d" % seed).digest()
        self.rng = random.Random(seed)
        self.host = HostFrames(self.key, nonces=seed.to_bytes(8, "big"))
        self.firmware = open_firmware(interpreter, self.key, manual_clock=True)
        self.replies = FrameDecoder()
        self.transmitted = hashlib.sha256()  # every byte the firmware sent, in order
        self.frames_fed = 0
        self.hellos = 0
        self.pulse_results: dict[str, int] = {}  # forged and replayed pulses' answers
        self.command_results: dict[str, int] = {}  # forged and replayed close / indicator
        try:
            self._set_up()
        except BaseException:
            self.close()
            raise

    def _set_up(self) -> None:
        self._received(self.firmware.boot(ResetCause.POWER_ON))
        self._hello()
        self.captured: list[bytes] = []  # genuine pulse frames, all used up
        self.captured_commands: list[bytes] = []  # genuine session commands, used up
        for i in range(self.SETUP_PULSES):
            wire = self._next_frame(MsgType.RELAY_PULSE, self.host.relay_pulse(100 + i))
            self._feed(wire)
            self.captured.append(wire)
            for msg_type, body in (
                (MsgType.INDICATOR, pack_indicator(Indicator.GRANTED)),
                (MsgType.RELAY_CLOSE, b""),
            ):
                wire = self._next_frame(msg_type, self.host.session_command(msg_type, body))
                self._feed(wire)
                self.captured_commands.append(wire)
            self._advance(200)
        outputs = self.firmware.outputs
        if outputs.relay_openings != self.SETUP_PULSES or self.firmware.state.relay_open:
            raise RuntimeError("fuzz harness setup failed: genuine pulses did not work")
        self._cmd(MsgType.STATUS_REQUEST, self.host.fresh_nonce())  # last command: no pulse
        self._baseline = outputs.relay_openings

    def close(self) -> None:
        self.firmware.close()

    def __enter__(self) -> "FuzzHarness":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    @property
    def relay_opened(self) -> int:
        """Relay openings since setup finished."""
        return self.firmware.outputs.relay_openings - self._baseline

    def _next_frame(self, msg_type: int, payload: bytes = b"") -> bytes:
        return self.host.frame(msg_type, payload)

    def _received(self, data: bytes) -> list[Frame]:
        self.transmitted.update(data)
        return self.replies.feed(data)

    def _feed(self, data: bytes) -> list[Frame]:
        return self._received(self.firmware.feed(data))

    def _cmd(self, msg_type: int, payload: bytes = b"") -> list[Frame]:
        # Leading 0x00 flushes any half frame the fuzz left in the MCU's decoder,
        # as GateLink does when it opens the port.
        return self._feed(b"\x00" + self._next_frame(msg_type, payload))

    def _advance(self, ms: int) -> None:
        self._received(self.firmware.tick(ms))

    def _hello(self) -> None:
        replies = self._cmd(MsgType.HELLO, self.host.fresh_nonce())
        if not any(self.host.read_status(f, greeting=True) for f in replies):
            raise RuntimeError("fuzz harness: the firmware's greeting did not verify")

    def _keep_session(self) -> None:
        """Like the host: re-HELLO when the MCU dropped the session, so forged
        pulses reach the authentication check instead of REJECTED_BAD."""
        if not self.firmware.state.session:
            self.hellos += 1
            self._hello()

    @staticmethod
    def _record(replies: list[Frame], seq: int, tally: dict[str, int]) -> None:
        for f in replies:
            if f.msg_type == MsgType.ACK:
                acked, result = unpack_ack(f.payload)
                if acked == seq:
                    name = Result.name(result)
                    tally[name] = tally.get(name, 0) + 1
                    return

    # -------------------------------------------------------------- inputs

    def _benign_frame(self) -> bytes:
        r = self.rng
        kind = r.randrange(5)
        if kind == 0:
            body, msg_type = b"", MsgType.HEARTBEAT
        elif kind == 1:
            body, msg_type = pack_indicator(r.choice(Indicator.ALL)), MsgType.INDICATOR
        elif kind == 2:
            body, msg_type = pack_buzzer(r.randrange(0x10000)), MsgType.BUZZER
        elif kind == 3:
            return self._next_frame(MsgType.STATUS_REQUEST, self.host.fresh_nonce())
        else:
            body, msg_type = b"", MsgType.RELAY_CLOSE
        return self._next_frame(msg_type, self.host.session_command(msg_type, body))

    def _forged_command(self) -> bytes:
        """A CRC-valid RELAY_CLOSE / INDICATOR that is not authentic or not fresh."""
        r = self.rng
        kind = r.randrange(3)
        if kind == 0:  # a recorded genuine one, used up
            return self._next_frame(MsgType.INDICATOR, self._captured_command_payload())
        msg_type, body = r.choice(
            [(MsgType.RELAY_CLOSE, b""), (MsgType.INDICATOR, bytes([Indicator.GRANTED]))]
        )
        n = self.host.n + 1 + r.randrange(1000)
        if kind == 1:  # the attacker's key
            payload = pack_session_command(self.ATTACKER, msg_type, self.host.session, n, body)
        else:  # version 1's unauthenticated layout
            payload = body
        return self._next_frame(msg_type, payload)

    def _captured_command_payload(self) -> bytes:
        wire = self.rng.choice(self.captured_commands)
        return FrameDecoder().feed(wire)[0].payload

    def _forged_pulse(self) -> tuple[int, bytes]:
        """-> (seq, wire) of a RELAY_PULSE that is CRC-valid but not authentic."""
        r = self.rng
        keys, epoch = self.host.keys, self.host.epoch
        fresh = min(self.firmware.state.last_counter + 1 + r.randrange(1000), 0xFFFFFFFF)
        duration = r.randrange(1, 0x10000)
        kind = r.randrange(6)
        if kind == 0:  # random tag
            payload = struct.pack(">HI", duration, fresh) + r.randbytes(16)
        elif kind == 1:  # attacker's key
            payload = pack_relay_pulse(self.ATTACKER, epoch, duration, fresh)
        elif kind == 2:  # genuine tag of a used pulse, counter bumped
            d, c = struct.unpack(">HI", self._captured_payload()[:6])
            payload = struct.pack(">HI", d, fresh) + relay_tag(keys, epoch, d, c)
        elif kind == 3:  # genuine tag, duration stretched
            d, c = struct.unpack(">HI", self._captured_payload()[:6])
            payload = struct.pack(">HI", 60_000, c) + relay_tag(keys, epoch, d, c)
        elif kind == 4:  # signed for another epoch
            payload = pack_relay_pulse(keys, epoch + 1 + r.randrange(1000), duration, fresh)
        else:  # wrong length / zero duration
            payload = r.choice(
                [
                    r.randbytes(r.randrange(0, 40)),
                    pack_relay_pulse(keys, epoch, 0, fresh),
                ]
            )
        seq = self.host.seq
        return seq, self._next_frame(MsgType.RELAY_PULSE, payload)

    def _captured_payload(self) -> bytes:
        wire = self.rng.choice(self.captured)
        return FrameDecoder().feed(wire)[0].payload

    def _replayed_pulse(self) -> tuple[int, bytes]:
        """A captured genuine pulse, with its own seq or a new one."""
        r = self.rng
        if r.random() < 0.5:
            wire = r.choice(self.captured)
            return FrameDecoder().feed(wire)[0].seq, wire
        seq = self.host.seq
        return seq, self._next_frame(MsgType.RELAY_PULSE, self._captured_payload())

    def _any_valid_frame(self) -> bytes:
        r = self.rng
        pick = r.randrange(4)
        if pick == 0:
            return self._benign_frame()
        if pick == 1:
            return self._forged_pulse()[1]
        if pick == 2:
            return self._forged_command()
        return self._replayed_pulse()[1]

    def _random_bytes(self) -> bytes:
        r = self.rng
        data = bytearray(r.randbytes(r.randrange(0, 200)))
        if data and r.random() < 0.5:
            data[r.randrange(len(data))] = 0
        return bytes(data)

    def _random_crc_valid_frame(self) -> bytes:
        """Random header/payload with a correct CRC: reaches the type/length checks."""
        r = self.rng
        payload = r.randbytes(r.randrange(0, MAX_PAYLOAD + 1))
        plen = len(payload) if r.random() < 0.7 else r.randrange(256)
        body = bytes([r.choice([1, 1, 1, 0, 2]), r.randrange(256), r.randrange(256), plen])
        body += payload
        return cobs_encode(body + struct.pack(">H", crc16_ccitt_false(body))) + b"\x00"

    # ---------------------------------------------------------------- run

    def fuzz_one(self) -> None:
        """Feed one hostile input, chosen at random from the mutation kinds."""
        r = self.rng
        self._keep_session()
        kind = r.randrange(9)
        if kind == 0:
            self._feed(self._random_bytes())
        elif kind == 1:  # truncated, then resync (or not)
            wire = self._any_valid_frame()
            cut = wire[: r.randrange(0, len(wire) - 1)]
            self._feed(cut + (b"\x00" if r.random() < 0.5 else b""))
        elif kind == 2:  # concatenated: several frames and fragments in one read
            parts = []
            for _ in range(r.randrange(2, 6)):
                part = self._any_valid_frame()
                if r.random() < 0.3:
                    part = part[: r.randrange(0, len(part))]
                parts.append(part)
            self._feed(b"".join(parts))
        elif kind == 3:  # bit flips on the wire (CRC not fixed)
            wire = bytearray(self._any_valid_frame())
            for _ in range(r.randrange(1, 4)):
                pos = r.randrange(len(wire) - 1)
                wire[pos] ^= 1 << r.randrange(8)
            self._feed(bytes(wire))
        elif kind == 4:  # replayed genuine pulse
            seq, wire = self._replayed_pulse()
            self._record(self._feed(wire), seq, self.pulse_results)
        elif kind == 5:  # forged pulse
            seq, wire = self._forged_pulse()
            self._record(self._feed(wire), seq, self.pulse_results)
        elif kind == 6:
            self._feed(self._random_crc_valid_frame())
        elif kind == 7:  # forged or replayed relay close / indicator
            seq = self.host.seq
            self._record(self._feed(self._forged_command()), seq, self.command_results)
        else:  # benign traffic, keeps the duplicate filter moving
            self._feed(self._benign_frame())
        self.frames_fed += 1
        self._advance(r.randrange(0, 30))

    def run(self, frames: int) -> int:
        """Feed ``frames`` hostile inputs; return relay openings so far (must be 0)."""
        for _ in range(frames):
            self.fuzz_one()
        return self.relay_opened

    def inject_valid_pulse(self, duration_ms: int = 100) -> int:
        """Control: a genuine, fresh, authenticated pulse; returns its ACK result."""
        self._keep_session()
        seq = self.host.seq
        counter = self.firmware.state.last_counter + 1
        replies = self._cmd(MsgType.RELAY_PULSE, self.host.relay_pulse(duration_ms, counter))
        for f in replies:
            if f.msg_type == MsgType.ACK and unpack_ack(f.payload)[0] == seq:
                return unpack_ack(f.payload)[1]
        raise RuntimeError("no ACK for the control pulse")


# -------------------------------------------------------------------- the bench


def bench_serial(
    rounds: int = 200, fuzz_frames: int = 5000, seed: int = 0, interpreter: str = "cpython"
) -> dict:
    """Round-trip latency over a pty at 115200 baud, then firmware fuzzing.

    Returns ``rtt_ms_p50``, ``rtt_ms_p99``, ``rounds``, ``frames_fuzzed``,
    ``relay_opened_by_fuzz`` (must be 0), ``retransmissions`` plus a few
    diagnostics.  A pty transfers bytes instantly whatever the baud rate, so the
    RTT measures the software stack (pyserial, threads, firmware);
    ``uart_wire_ms_per_round`` is the extra byte time a real 115200 8N1 UART
    adds.  Raises ``LinkError`` if the simulator does not answer.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if fuzz_frames < 0:
        raise ValueError("fuzz_frames must not be negative")
    key = os.urandom(32)
    rtts: list[float] = []
    with Simulator(key, interpreter=interpreter) as sim:
        link = GateLink(sim.port, key, baudrate=BAUDRATE)
        with link:
            for i in range(rounds):
                t0 = time.perf_counter()
                if i % 2 == 0:
                    link.set_indicator(Indicator.ALL[(i // 2) % len(Indicator.ALL)])
                else:
                    link.request_status()
                rtts.append((time.perf_counter() - t0) * 1000)
            retransmissions = link.retransmissions
        sim_rx_errors = sim.rx_errors
    rtts.sort()

    with FuzzHarness(seed=seed, interpreter=interpreter) as harness:
        t0 = time.perf_counter()
        opened = harness.run(fuzz_frames)
        fuzz_seconds = time.perf_counter() - t0
        control_ok = (
            harness.inject_valid_pulse() == Result.OK and harness.relay_opened == opened + 1
        )

    return {
        "interpreter": interpreter,
        "rtt_ms_p50": round(_percentile(rtts, 50), 3),
        "rtt_ms_p99": round(_percentile(rtts, 99), 3),
        "rtt_ms_max": round(rtts[-1], 3),
        "rounds": rounds,
        "retransmissions": retransmissions,
        "baudrate": BAUDRATE,
        "uart_wire_ms_per_round": round(_uart_wire_ms(BAUDRATE), 3),
        "sim_rx_errors": sim_rx_errors,
        "frames_fuzzed": harness.frames_fed,
        "relay_opened_by_fuzz": opened,
        "fuzz_pulse_results": dict(sorted(harness.pulse_results.items())),
        "fuzz_command_results": dict(sorted(harness.command_results.items())),
        "fuzz_decoder_dropped": harness.firmware.state.rx_errors,
        "fuzz_transmitted_sha256": harness.transmitted.hexdigest(),
        "fuzz_seconds": round(fuzz_seconds, 3),
        "control_pulse_opened_relay": control_ok,
        "seed": seed,
    }


__all__ = ["BAUDRATE", "FuzzHarness", "bench_serial"]

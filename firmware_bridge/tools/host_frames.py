"""The host's half of the protocol as bytes: no port, no threads, no retransmission.

:class:`HostFrames` builds what a host sends (HELLO and STATUS_REQUEST with fresh
nonces, session commands numbered and tagged, relay pulses and NEW_EPOCH for the MCU's
epoch) and reads the MCU's STATUS the way :class:`~firmware_bridge.host.GateLink` does
(only if it verifies for the last nonce). The fuzzer (``bench.FuzzHarness``), the
firmware cost bench and the conformance tests drive a firmware directly with it.
"""

from __future__ import annotations

import os

from firmware_bridge.protocol import (
    NONCE_LEN,
    SESSION_LEN,
    Frame,
    LinkKeys,
    MsgType,
    pack_new_epoch,
    pack_relay_pulse,
    pack_session_command,
    status_authentic,
    unpack_status,
)


class HostFrames:
    """One host's view of one MCU: keys, the session it was given, the MCU's epoch."""

    def __init__(self, key: bytes, *, nonces: bytes | None = None) -> None:
        """``nonces``: a seed for reproducible nonces (a seeded fuzz run); random if None."""
        self.keys = LinkKeys(key)
        self.seq = 0
        self.nonce = bytes(NONCE_LEN)  # the last one sent
        self.session = bytes(SESSION_LEN)
        self.n = 0
        self.epoch = 0
        self.last_counter = 0
        self._seed = nonces
        self._nonces = 0

    def frame(self, msg_type: int, payload: bytes = b"", seq: int | None = None) -> bytes:
        """The wire bytes of one command (the next seq unless given)."""
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
        return Frame(msg_type, seq, payload).encode()

    def fresh_nonce(self) -> bytes:
        """A HELLO or STATUS_REQUEST payload; :meth:`read_status` then checks against it."""
        if self._seed is None:
            self.nonce = os.urandom(NONCE_LEN)
        else:
            self._nonces += 1
            self.nonce = self.keys.down.digest(self._seed + self._nonces.to_bytes(4, "big"))[
                :NONCE_LEN
            ]
        return self.nonce

    def read_status(self, frame: Frame, *, greeting: bool = False) -> tuple | None:
        """The STATUS tuple (``protocol.unpack_status``) if ``frame`` verifies for the last
        nonce, else None. A greeting's STATUS starts the session: its id, numbers from 1."""
        if frame.msg_type != MsgType.STATUS or not status_authentic(
            self.keys, frame.seq, frame.payload, self.nonce
        ):
            return None
        status = unpack_status(frame.payload)
        self.epoch, self.last_counter = status[3], status[4]
        if greeting:
            self.session = status[5]
            self.n = 0
        return status

    def session_command(self, msg_type: int, body: bytes = b"") -> bytes:
        """The payload of the session's next HEARTBEAT, RELAY_CLOSE, INDICATOR or BUZZER."""
        self.n += 1
        return pack_session_command(self.keys, msg_type, self.session, self.n, body)

    def relay_pulse(self, duration_ms: int, counter: int | None = None) -> bytes:
        """A RELAY_PULSE payload for the MCU's epoch (counter: the next one by default)."""
        if counter is None:
            counter = self.last_counter + 1
        self.last_counter = max(self.last_counter, counter)
        return pack_relay_pulse(self.keys, self.epoch, duration_ms, counter)

    def new_epoch(self) -> bytes:
        """The NEW_EPOCH payload that moves the MCU from its epoch to the next."""
        return pack_new_epoch(self.keys, self.epoch + 1)


__all__ = ["HostFrames"]

"""The host driver's exceptions (what the appliance catches around :class:`host.GateLink`).

``protocol`` holds the frame errors, which the MCU shares; these are the host's alone.
"""

from firmware_bridge.protocol import BridgeError, Result


class LinkError(BridgeError):
    """The MCU could not be reached (port closed/vanished, no ACK after retries)."""


class CounterImplausible(LinkError):
    """The MCU's authenticated relay counter cannot be used (at its end, moved back, or
    jumped far ahead): the gate stays out of service until the technician starts a new
    counter epoch (``gatectl provision --rotate``) or redeploys the firmware. A
    :class:`LinkError`, so every caller already treats it as "the gate cannot open"."""


class NotAuthentic(LinkError):
    """The MCU's STATUS did not verify for the host's nonce: the MCU holds another relay
    key, or the frames were forged or rewritten on the line. Nothing from it is used."""


class CommandRejected(BridgeError):
    """The MCU ACKed a command with a non-OK result; ``result`` holds the code."""

    def __init__(self, command: str, result: int) -> None:
        super().__init__(f"MCU rejected {command}: {Result.name(result)}")
        self.command = command
        self.result = result


__all__ = ["CommandRejected", "CounterImplausible", "LinkError", "NotAuthentic"]

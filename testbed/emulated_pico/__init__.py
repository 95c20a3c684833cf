"""An emulated Raspberry Pi Pico that mpremote really talks to (see ``board``)."""

from testbed.emulated_pico.board import EmulatedPico

__all__ = ["EmulatedPico"]

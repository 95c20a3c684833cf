"""The gate MCU's firmware behind a pseudo-terminal, for tests, the demo and benches."""

from firmware_bridge.simulator.pty import Simulator

__all__ = ["Simulator"]

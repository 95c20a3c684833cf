"""The gate: its state machine over the MCU link, the workflow around it (modes, scans,
agent actions), boarding-pass checks, the outcome of a traveller and the boarding log.

This room is pure logic: importing it pulls in neither OpenCV nor gRPC.
"""

__all__: list[str] = []

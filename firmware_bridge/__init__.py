"""Serial bridge between the gate host and the gate MCU (relay, lights, buzzer, buttons).

Rooms:

* ``protocol``: framing (COBS, CRC-16), sequence numbers, message layouts and the relay
  HMAC; shared with the MCU, so MicroPython-compatible and import-light;
* ``host``: the pyserial driver the appliance uses (:class:`host.GateLink`);
* ``mcu/``: the reference firmware (``firmware.FirmwareCore``, hardware-independent),
  the Raspberry Pi Pico main loop (``pico_main``) and the list of files that make the
  firmware (``manifest``); wiring and deploy in ``mcu/README.md``;
* ``simulator/``: the firmware served on a pseudo-terminal, for tests and the demo, on
  CPython or on the real MicroPython (``python -m firmware_bridge.simulator
  [--interpreter micropython]``);
* ``tools/``: ``serial_check`` (``gatectl serial test``), ``bench`` (``gatectl bench
  serial``), ``firmware_build`` (``mpy-cross`` for the RP2040), ``firmware_cost`` and
  ``firmware_bench`` (``gatectl bench firmware``).

Exceptions::

    BridgeError
    ├── ProtocolError        a frame that does not decode (BadCobs, BadCrc, BadLength,
    │                        FrameTooLong, UnknownVersion, UnknownType, BadPayload)
    ├── LinkError            the MCU cannot be reached (port gone, no ACK after retries)
    ├── CommandRejected      the MCU refused a command (``result`` holds its code)
    ├── SimulatorError       the simulated MCU cannot start or stopped answering
    └── FirmwareBuildError   mpy-cross is missing or refused a firmware module
"""

__all__: list[str] = []

"""Serial bridge between the gate host and the gate MCU (relay, lights, buzzer, buttons).

Rooms:

* ``protocol``: framing (COBS, CRC-16), sequence numbers, message layouts and the relay
  HMAC; shared with the MCU, so MicroPython-compatible and import-light;
* ``host``: the pyserial driver the appliance uses (:class:`host.GateLink`);
* ``mcu/``: the reference firmware (``firmware.FirmwareCore``, hardware-independent) and
  the Raspberry Pi Pico main loop (``pico_main``); they import only ``protocol``;
* ``simulator/``: the firmware served on a pseudo-terminal, for tests and the demo
  (``python -m firmware_bridge.simulator``);
* ``tools/``: ``serial_check`` (``gatectl serial test``) and ``bench`` (``gatectl bench
  serial``).

Exceptions::

    BridgeError
    ├── ProtocolError        a frame that does not decode (BadCobs, BadCrc, BadLength,
    │                        FrameTooLong, UnknownVersion, UnknownType, BadPayload)
    ├── LinkError            the MCU cannot be reached (port gone, no ACK after retries)
    └── CommandRejected      the MCU refused a command (``result`` holds its code)
"""

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

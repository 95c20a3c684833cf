"""Code that runs on the gate MCU (MicroPython): the firmware core and the Pico main loop."""

__all__: list[str] = []

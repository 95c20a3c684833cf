"""Serial bridge between the gate host and the gate MCU (relay, lights, buzzer).

``protocol`` is shared with the firmware (MicroPython-compatible), ``firmware``
is the reference MCU logic, ``simulator`` serves it on a pty, ``host`` is the
pyserial driver used by the appliance.  Import ``host``/``simulator`` explicitly:
this package module stays import-light so MicroPython can use ``protocol``.
"""

"""The emulated Pico's ``machine`` module: what the gate firmware uses, mirrored to the host.

Not the real rp2 API surface (``make firmware-check`` checks the firmware against that):
just Pin, PWM, UART, WDT and the reset functions, backed by ``js.board`` in
``board.mjs`` so the host side can set input levels (the SERVICE jumper), see output
levels (the relay pin) and run the watchdog.
"""

import js

_board = js.board

PWRON_RESET = 1
WDT_RESET = 3
SOFT_RESET = 5


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        level = _board.inputLevel(id)
        if mode == Pin.IN:
            self._v = (1 if pull == Pin.PULL_UP else 0) if level is None else level
        else:
            self._v = 1 if value else 0
            _board.pin(id, self._v)

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
        _board.pin(self.id, self._v)
        return None

    def __call__(self, v=None):
        return self.value(v)


class PWM:
    def __init__(self, pin, **kw):
        self.pin = pin
        self._freq = 0
        self._duty = 0

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f
        return None

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        return None


class UART:
    """No wires on the emulated board: the firmware uses the USB transport here."""

    def __init__(self, id, baudrate=115200, **kw):
        self.id = id

    def any(self):
        _board.poll()
        return 0

    def read(self, n=-1):
        return None

    def write(self, data):
        return len(data)


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout > 8388:
            raise ValueError("timeout too large")  # the rp2 limit
        _board.wdtStart(timeout)

    def feed(self):
        _board.wdtFeed()


def reset():
    _board.reset()
    raise SystemExit


def reset_cause():
    return {0: PWRON_RESET, 1: WDT_RESET, 2: SOFT_RESET}.get(_board.resetCause, PWRON_RESET)


def unique_id():
    return b"\xe6\x60\x58\x38\x83\x33\x33\x31"

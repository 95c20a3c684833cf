"""The emulated Pico's ``time``: MicroPython's own, but ``sleep_ms`` really sleeps.

The webassembly port's ``sleep_ms`` spins the CPU for the whole wait; the board's main
loop sleeps 1 ms per iteration, so the emulator would burn a core. This sleeps in
``board.mjs`` instead (and serves the serial line meanwhile), as a Pico idles.
"""

import js
from utime import *  # noqa: F403  (ticks_ms, ticks_diff, ... unchanged)

_board = js.board


def sleep_ms(ms):
    _board.sleep(ms)


def sleep(seconds):
    _board.sleep(int(seconds * 1000))

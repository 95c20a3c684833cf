"""Reference gate firmware for a Raspberry Pi Pico (RP2040) running MicroPython.

A thin hardware layer (``PicoHal``) under the hardware-independent
:class:`firmware_bridge.mcu.firmware.FirmwareCore`, plus the main loop.

Pin map (RP2040 GPIO numbers; 3.3 V logic)::

    GP0   UART0 TX  -> host RX        115200 8N1 (TRANSPORT = "uart")
    GP1   UART0 RX  <- host TX
    GP15  RELAY     out, active high: 1 = relay energised = gate released.
                    Needs an external 10 kOhm pull-down on the driver input so
                    the relay stays de-energised while the RP2040 is in reset.
    GP16  LED_RED   out, active high (RGB indicator, via driver/resistor)
    GP17  LED_GREEN out, active high
    GP18  LED_BLUE  out, active high
    GP19  BUZZER    PWM 2.7 kHz, 50 % duty (piezo via transistor)
    GP20  OPT_OUT   in, internal pull-up; button to GND (pressed = low)
    GP21  DOOR      in, internal pull-up; reed contact to GND, closed when the
                    door/barrier is shut (low = closed, high/broken wire = open)
    GP22  SERVICE   in, internal pull-up; a jumper to GND at power-up = service
                    mode: relay closed, red, firmware not started, REPL free

Alternatively the host link can be the Pico's USB CDC serial port
(TRANSPORT = "usb"): bytes are read from ``sys.stdin.buffer`` with
``select.poll`` and Ctrl-C handling is disabled so frame bytes pass through.
That also locks ``mpremote`` out while the firmware runs (it cannot interrupt
it); the SERVICE jumper is the way back in (see ``mcu/README.md``).

Flash layout (LittleFS)::

    /gate_key.hex                 per-gate relay HMAC key, hex, >= 16 bytes
    /gate_ctr.a, /gate_ctr.b      relay counter epoch and last accepted counter (two slots)
    /main.py                      ``main(transport=...)``, written by ``gatectl firmware deploy``
    /firmware_bridge/             __init__, protocol, mcu/{__init__,firmware,pico_main}
                                  (.mpy from ``gatectl firmware deploy``, or .py)

Fail secure: the relay pin is driven low before anything else, the hardware
watchdog (``machine.WDT``) is fed only from the main loop, and any exception
closes the relay before the watchdog resets the board.

This module imports on CPython: ``machine`` is imported where it is used, so
the HAL logic is unit-tested with a fake ``machine`` module in ``sys.modules``,
and a type checker reads every call against MicroPython's published rp2 stubs
(``make firmware-check``). It avoids dataclasses/typing so it runs on MicroPython.
"""

# MicroPython compatibility: %-formatting and zip() without strict= are deliberate.
# ruff: noqa: UP031, B905

import struct
import sys
import time

# ------------------------------------------------------------------- pin map

PIN_UART_TX = 0
PIN_UART_RX = 1
PIN_RELAY = 15
PIN_LED_RED = 16
PIN_LED_GREEN = 17
PIN_LED_BLUE = 18
PIN_BUZZER = 19
PIN_OPT_OUT = 20
PIN_DOOR = 21
PIN_SERVICE = 22

UART_ID = 0
BAUDRATE = 115200
TRANSPORT = "uart"  # or "usb" for the USB CDC serial port

BUZZER_HZ = 2700
DEBOUNCE_MS = 30
TICK_MS = 10
WDT_TIMEOUT_MS = 2000  # RP2040 maximum is ~8300 ms

KEY_PATH = "/gate_key.hex"
COUNTER_DIR = "/"

# Indicator pattern (protocol.Indicator value) -> (red, green, blue, blink_ms).
# blink_ms 0 = steady.  Kept as literals so this module needs no firmware import
# before the relay pin is secured; tests check it covers every Indicator.
INDICATOR_COLOURS = {
    0: (0, 0, 0, 0),  # OFF
    1: (0, 0, 1, 0),  # READY            steady blue
    2: (0, 0, 1, 250),  # CAPTURING      blinking blue
    3: (0, 1, 0, 0),  # GRANTED          steady green
    4: (1, 1, 0, 500),  # SEE_AGENT      blinking amber
    5: (1, 0, 0, 0),  # OUT_OF_SERVICE   steady red
    6: (1, 1, 1, 0),  # OPT_OUT_ACK      steady white
}
_OUT_OF_SERVICE = 5

# The relay state (epoch, counter) stored as magic + both + their bitwise complements
# (detects torn writes).
COUNTER_MAGIC = b"GC2"
# Both slots corrupt: epoch and counter at their ends, so every pulse is stale and no new
# epoch is above it (protocol.EPOCH_LOCKED) until a deploy sets the store again.
COUNTER_LOCKED = (0xFFFFFFFF, 0xFFFFFFFF)


# --------------------------------------------------------------------- clock


class TicksClock:
    """Non-wrapping milliseconds from ``time.ticks_ms`` (which wraps every ~12.4 days
    on rp2).  Must be called more often than half the wrap period (the main loop
    calls it every iteration).  Falls back to ``time.monotonic`` on CPython."""

    def __init__(self, ticks_ms=None, ticks_diff=None) -> None:
        if ticks_ms is None:
            ticks_ms = getattr(time, "ticks_ms", None)
            ticks_diff = getattr(time, "ticks_diff", None)
        if ticks_ms is None or ticks_diff is None:  # CPython
            ticks_ms = _monotonic_ms
            ticks_diff = _plain_diff
        self._ticks_ms = ticks_ms
        self._diff = ticks_diff
        self._last = ticks_ms()
        self._now = 0

    def __call__(self) -> int:
        t = self._ticks_ms()
        self._now += max(0, self._diff(t, self._last))
        self._last = t
        return self._now


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)  # type: ignore[attr-defined]  # CPython only


def _plain_diff(a: int, b: int) -> int:
    return a - b


def _sleep_ms(ms: int) -> None:
    fn = getattr(time, "sleep_ms", None)
    if fn is not None:
        fn(ms)
    else:
        time.sleep(ms / 1000)


# ---------------------------------------------------------------- debouncing


class Debouncer:
    """Reports a new level only after the raw input held it for ``settle_ms``."""

    def __init__(self, initial: bool, settle_ms: int = DEBOUNCE_MS) -> None:
        self.stable = bool(initial)
        self.settle_ms = settle_ms
        self._since: int | None = None  # when the raw level first differed from ``stable``

    def update(self, raw: bool, now_ms: int):
        """Feed one sample; return the new stable level if it just changed, else None."""
        raw = bool(raw)
        if raw == self.stable:
            self._since = None  # a bounce back: start over
            return None
        if self._since is None:
            self._since = now_ms
            return None
        if now_ms - self._since >= self.settle_ms:
            self.stable = raw
            self._since = None
            return raw
        return None


# ----------------------------------------------------------- counter on flash


def _path_join(folder: str, name: str) -> str:
    return folder + name if folder.endswith("/") else folder + "/" + name


class CounterStore:
    """The relay counter and its epoch, in two alternating slot files on flash.

    A power cut while writing can only damage the slot being written; the other
    still holds the previous value.  Fresh flash (no slot file) initialises both
    slots to (0, 0).  If both slots exist but neither is valid the store reports
    ``COUNTER_LOCKED`` so every pulse is rejected as stale (fail secure) until
    the firmware is deployed again.  A failing write raises, which aborts the pulse
    before the relay opens (FirmwareCore stores the counter first).
    """

    def __init__(self, folder: str = COUNTER_DIR) -> None:
        self.paths = (_path_join(folder, "gate_ctr.a"), _path_join(folder, "gate_ctr.b"))
        self._next = 0  # slot index to write next

    @staticmethod
    def _encode(epoch: int, counter: int) -> bytes:
        return COUNTER_MAGIC + struct.pack(
            ">IIII", epoch, counter, epoch ^ 0xFFFFFFFF, counter ^ 0xFFFFFFFF
        )

    def _read(self, path: str):
        """-> (epoch, counter), None if the slot is corrupt; raises OSError if missing."""
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != len(COUNTER_MAGIC) + 16 or data[: len(COUNTER_MAGIC)] != COUNTER_MAGIC:
            return None
        epoch, counter, epoch_check, counter_check = struct.unpack(
            ">IIII", data[len(COUNTER_MAGIC) :]
        )
        if epoch ^ epoch_check != 0xFFFFFFFF or counter ^ counter_check != 0xFFFFFFFF:
            return None
        return epoch, counter

    def _write(self, slot: int, epoch: int, counter: int) -> None:
        with open(self.paths[slot], "wb") as f:
            f.write(self._encode(epoch, counter))

    def load(self) -> tuple:
        """-> (epoch, counter): the newest valid slot, or ``COUNTER_LOCKED``."""
        values = []
        missing = 0
        for slot, path in enumerate(self.paths):
            try:
                value = self._read(path)
            except OSError:
                missing += 1
                continue
            if value is not None:
                values.append((value, slot))
        if missing == len(self.paths):
            for slot in range(len(self.paths)):
                self._write(slot, 0, 0)
            self._next = 0
            return (0, 0)
        if not values:
            return COUNTER_LOCKED
        value, slot = max(values)
        self._next = 1 - slot  # never overwrite the newest good slot
        return value

    def store(self, epoch: int, counter: int) -> None:
        self._write(self._next, epoch, counter)
        self._next = 1 - self._next


def load_key(path: str = KEY_PATH) -> bytes:
    """Read the per-gate relay key (hex text); raise ValueError if unusable."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        raise ValueError("relay key file %s missing" % path) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("relay key file %s is not hex" % path) from None
    if len(key) < 16:
        raise ValueError("relay key in %s must be at least 16 bytes" % path)
    return key


# ------------------------------------------------------------------ the HAL


class PicoHal:
    """FirmwareCore HAL over ``machine.Pin``/``machine.PWM``.

    The relay pin is configured first, low (closed), in the constructor.
    """

    def __init__(self, now_ms=None, counter_store=None) -> None:
        import machine

        Pin = machine.Pin
        # value=0 is applied before the pin becomes an output: no glitch high.
        self._relay = Pin(PIN_RELAY, Pin.OUT, value=0)
        self.relay_open = False
        self.now_ms = now_ms if now_ms is not None else TicksClock()
        self._leds = (
            Pin(PIN_LED_RED, Pin.OUT, value=0),
            Pin(PIN_LED_GREEN, Pin.OUT, value=0),
            Pin(PIN_LED_BLUE, Pin.OUT, value=0),
        )
        self._pwm = machine.PWM(Pin(PIN_BUZZER, Pin.OUT, value=0))
        self._pwm.freq(BUZZER_HZ)
        self._pwm.duty_u16(0)
        self._buzz_end: int | None = None
        self._button = Pin(PIN_OPT_OUT, Pin.IN, Pin.PULL_UP)
        self._door = Pin(PIN_DOOR, Pin.IN, Pin.PULL_UP)
        self._store = counter_store
        self.pattern = _OUT_OF_SERVICE
        self._pattern_since = 0
        self._show(True)
        now = self.now_ms()
        self._pattern_since = now
        # Held at boot is not a press; the door's boot state is reported by the loop.
        self._button_db = Debouncer(self._button_raw())
        self._door_db = Debouncer(self._door_raw())

    # ---------------------------------------------------------- outputs

    def relay(self, open_: bool) -> None:
        self.relay_open = bool(open_)
        self._relay.value(1 if open_ else 0)

    def indicator(self, pattern: int) -> None:
        if pattern not in INDICATOR_COLOURS:
            pattern = _OUT_OF_SERVICE
        self.pattern = pattern
        self._pattern_since = self.now_ms()
        self._show(True)

    def _show(self, lit: bool) -> None:
        r, g, b, _ = INDICATOR_COLOURS[self.pattern]
        for pin, on in zip(self._leds, (r, g, b)):
            pin.value(1 if (on and lit) else 0)

    def buzzer(self, ms: int) -> None:
        if ms <= 0:
            self._buzzer_off()
            return
        self._pwm.duty_u16(32768)
        self._buzz_end = self.now_ms() + ms

    def _buzzer_off(self) -> None:
        self._pwm.duty_u16(0)
        self._buzz_end = None

    @property
    def buzzing(self) -> bool:
        return self._buzz_end is not None

    # ----------------------------------------------------------- inputs

    def _button_raw(self) -> bool:
        return self._button.value() == 0  # pressed pulls to GND

    def _door_raw(self) -> bool:
        return self._door.value() == 1  # contact open (or wire cut) = door open

    @property
    def door_open(self) -> bool:
        return self._door_db.stable

    def poll_inputs(self, now_ms: int) -> tuple:
        """Sample the button and door; -> (opt_out_pressed, door_change or None)."""
        pressed = self._button_db.update(self._button_raw(), now_ms) is True
        door = self._door_db.update(self._door_raw(), now_ms)
        return pressed, door

    def service(self, now_ms: int) -> None:
        """Periodic output housekeeping: end the buzzer chirp, blink the indicator."""
        if self._buzz_end is not None and now_ms >= self._buzz_end:
            self._buzzer_off()
        blink = INDICATOR_COLOURS[self.pattern][3]
        if blink:
            self._show(((now_ms - self._pattern_since) // blink) % 2 == 0)

    # ------------------------------------------------------ counter hooks

    def load_counter(self) -> tuple:
        return self._store.load() if self._store is not None else (0, 0)

    def store_counter(self, epoch: int, counter: int) -> None:
        if self._store is not None:
            self._store.store(epoch, counter)

    # ------------------------------------------------------ randomness

    def random_bytes(self, n: int) -> bytes:
        """Session ids: the RP2040's ring-oscillator random source, via ``os.urandom``."""
        import os

        return os.urandom(n)


# ----------------------------------------------------------------- transports


class UartTransport:
    """Host link on a hardware UART (GP0/GP1 by default)."""

    def __init__(self, uart_id: int = UART_ID, baudrate: int = BAUDRATE) -> None:
        import machine

        self._uart = machine.UART(
            uart_id,
            baudrate=baudrate,
            bits=8,
            parity=None,
            stop=1,
            tx=machine.Pin(PIN_UART_TX),
            rx=machine.Pin(PIN_UART_RX),
            rxbuf=512,
        )

    def read(self) -> bytes:
        n = self._uart.any()
        if not n:
            return b""
        data = self._uart.read(n)
        return bytes(data) if data else b""

    def write(self, data: bytes) -> None:
        if data:
            self._uart.write(data)


class UsbCdcTransport:
    """Host link on the USB CDC serial port (MicroPython's stdin/stdout)."""

    MAX_READ = 64

    def __init__(self, stdin=None, stdout=None) -> None:
        import select

        try:
            import micropython

            micropython.kbd_intr(-1)  # 0x03 in a frame must not raise KeyboardInterrupt
        except ImportError:  # CPython
            pass
        self._in = stdin if stdin is not None else sys.stdin.buffer
        self._out = stdout if stdout is not None else sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(self._in, select.POLLIN)

    def read(self) -> bytes:
        out = bytearray()
        while len(out) < self.MAX_READ and self._poll.poll(0):
            b = self._in.read(1)
            if not b:
                break
            out += b
        return bytes(out)

    def write(self, data: bytes) -> None:
        if data:
            self._out.write(data)


# ------------------------------------------------------------------ main loop


class MainLoop:
    """Glue: transport bytes <-> FirmwareCore, inputs -> events, periodic tick."""

    def __init__(self, core, hal: PicoHal, transport, wdt=None, tick_ms: int = TICK_MS) -> None:
        self.core = core
        self.hal = hal
        self.transport = transport
        self.wdt = wdt
        self.tick_ms = tick_ms
        self._next_tick = 0

    def boot(self, reset_cause: int) -> None:
        self.transport.write(self.core.boot(reset_cause))
        if self.hal.door_open:  # the core assumes "closed" at boot
            self.transport.write(self.core.set_door(True))
        self._next_tick = self.hal.now_ms() + self.tick_ms

    def step(self) -> None:
        """One loop iteration; never blocks."""
        if self.wdt is not None:
            self.wdt.feed()
        data = self.transport.read()
        if data:
            self.transport.write(self.core.feed(data))
        now = self.hal.now_ms()
        pressed, door = self.hal.poll_inputs(now)
        if pressed:
            self.transport.write(self.core.press_opt_out())
        if door is not None:
            self.transport.write(self.core.set_door(door))
        if now >= self._next_tick:
            self._next_tick = now + self.tick_ms
            self.transport.write(self.core.tick())
            self.hal.service(now)

    def run(self, max_iterations=None) -> None:
        """Loop forever (or ``max_iterations`` times, for tests); relay closed on exit."""
        n = 0
        try:
            while max_iterations is None or n < max_iterations:
                self.step()
                n += 1
                _sleep_ms(1)
        finally:
            self.hal.relay(False)  # then the unfed watchdog resets the board


def reset_cause_of() -> int:
    """Map ``machine.reset_cause()`` to a protocol ResetCause value."""
    import machine

    from firmware_bridge.protocol import ResetCause

    try:
        cause = machine.reset_cause()
    except (AttributeError, OSError):
        return ResetCause.POWER_ON
    if cause == getattr(machine, "WDT_RESET", object()):
        return ResetCause.WATCHDOG
    if cause == getattr(machine, "SOFT_RESET", object()):
        return ResetCause.SOFT
    if cause == getattr(machine, "BROWNOUT_RESET", object()):
        return ResetCause.BROWNOUT
    return ResetCause.POWER_ON


def service_jumper_set() -> bool:
    """The SERVICE pin held low at power-up: a technician wants the REPL, not the gate."""
    import machine

    return machine.Pin(PIN_SERVICE, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0


def main(
    transport: str = TRANSPORT,
    key_path: str = KEY_PATH,
    counter_dir: str = COUNTER_DIR,
    max_iterations=None,
) -> None:
    """Board entry point (``main.py``): secure the relay, boot the core, loop."""
    import machine

    # 1. Relay closed before anything else (PicoHal drives GP15 low first).
    hal = PicoHal(counter_store=CounterStore(counter_dir))
    if service_jumper_set():
        # Service mode: the gate stays shut and red, and main.py returns so the REPL
        # (and mpremote) can be reached even with the USB transport.
        hal.indicator(_OUT_OF_SERVICE)
        print("gate firmware: SERVICE jumper set; not starting (relay closed)")
        return

    from firmware_bridge.mcu.firmware import FirmwareCore

    try:
        key = load_key(key_path)
    except ValueError as e:
        # No key: the gate cannot be opened at all. Stay closed, show red, stop.
        hal.relay(False)
        hal.indicator(_OUT_OF_SERVICE)
        print("gate firmware: %s; not starting" % e)
        raise
    cause = reset_cause_of()
    link = UsbCdcTransport() if transport == "usb" else UartTransport()
    core = FirmwareCore(hal, key)
    loop = MainLoop(core, hal, link)
    loop.boot(cause)  # reads the counter from flash, relay closed, BOOT sent
    # 2. Watchdog from here on: only the main loop feeds it.
    loop.wdt = machine.WDT(timeout=WDT_TIMEOUT_MS)
    loop.run(max_iterations)


if __name__ == "__main__":
    main()

"""CPython tests of the Pico (RP2040) hardware layer with a fake ``machine`` module.

Time is a fake clock advanced by the tests; nothing sleeps.
"""

import importlib
import os
import sys
import types
from pathlib import Path

import pytest

from firmware_bridge.mcu import pico_main
from firmware_bridge.mcu.firmware import FirmwareCore
from firmware_bridge.mcu.pico_main import (
    COUNTER_LOCKED,
    INDICATOR_COLOURS,
    CounterStore,
    Debouncer,
    MainLoop,
    PicoHal,
    TicksClock,
    UsbCdcTransport,
)
from firmware_bridge.protocol import (
    EPOCH_LOCKED,
    Frame,
    FrameDecoder,
    Indicator,
    LinkKeys,
    MsgType,
    ResetCause,
    Result,
    pack_buzzer,
    pack_indicator,
    pack_new_epoch,
    pack_relay_pulse,
    unpack_ack,
    unpack_boot,
    unpack_u8,
)
from firmware_bridge.tools.host_frames import HostFrames

KEY = b"pico-test-key-0123456789abcdef!!"
ATTACKER = LinkKeys(b"attacker-key-000000000000000000!")


# ------------------------------------------------------------ fake machine


class FakeMachine(types.ModuleType):
    """Just enough of MicroPython's ``machine`` for pico_main, with a call log."""

    PWRON_RESET = 1
    WDT_RESET = 3

    def __init__(self) -> None:
        super().__init__("machine")
        self.log: list[tuple] = []  # every hardware call, in order
        self.pins: dict[int, FakePin] = {}
        self.pwms: list[FakePWM] = []
        self.uarts: list[FakeUART] = []
        self.wdts: list[FakeWDT] = []
        self.cause = self.PWRON_RESET
        # Level an input pin reads when created: button released, door shut, no
        # service jumper.
        self.input_levels = {
            pico_main.PIN_OPT_OUT: 1,
            pico_main.PIN_DOOR: 0,
            pico_main.PIN_SERVICE: 1,
        }
        machine = self

        class Pin(FakePin):
            def __init__(self, pin_id: int, mode: int = -1, pull: int = -1, *, value=None):
                super().__init__(machine, pin_id, mode, pull, value)

        class PWM(FakePWM):
            def __init__(self, pin: FakePin) -> None:
                super().__init__(machine, pin)

        class UART(FakeUART):
            def __init__(self, uart_id: int, **kw: object) -> None:
                super().__init__(machine, uart_id, kw)

        class WDT(FakeWDT):
            def __init__(self, timeout: int) -> None:
                super().__init__(machine, timeout)

        self.Pin, self.PWM, self.UART, self.WDT = Pin, PWM, UART, WDT

    def reset_cause(self) -> int:
        return self.cause


class FakePin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, machine: FakeMachine, pin_id: int, mode: int, pull: int, value) -> None:
        self.id = pin_id
        self.mode = mode
        self.pull = pull
        self.history: list[int] = []  # every level driven, first one included
        self.level = machine.input_levels.get(pin_id, 0)
        if value is not None:
            self.level = value
            self.history.append(value)
        machine.pins[pin_id] = self
        machine.log.append(("Pin", pin_id, mode, value))

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        self.history.append(self.level)
        return None


class FakePWM:
    def __init__(self, machine: FakeMachine, pin: FakePin) -> None:
        self.pin = pin
        self.hz = 0
        self.duty = None
        machine.pwms.append(self)
        machine.log.append(("PWM", pin.id))

    def freq(self, hz: int) -> None:
        self.hz = hz

    def duty_u16(self, duty: int) -> None:
        self.duty = duty


class FakeUART:
    def __init__(self, machine: FakeMachine, uart_id: int, kw: dict) -> None:
        self.id = uart_id
        self.kw = kw
        self.rx = bytearray()  # bytes from the host, not yet read
        self.tx = bytearray()  # bytes written by the firmware
        machine.uarts.append(self)
        machine.log.append(("UART", uart_id))

    def any(self) -> int:
        return len(self.rx)

    def read(self, n: int):
        if not self.rx:
            return None
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data

    def write(self, data: bytes) -> int:
        self.tx += data
        return len(data)


class FakeWDT:
    def __init__(self, machine: FakeMachine, timeout: int) -> None:
        self.timeout = timeout
        self.feeds = 0
        machine.wdts.append(self)
        machine.log.append(("WDT", timeout))

    def feed(self) -> None:
        self.feeds += 1


class Clock:
    def __init__(self) -> None:
        self.t = 5_000

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> FakeMachine:
    fake = FakeMachine()
    monkeypatch.setitem(sys.modules, "machine", fake)
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_hal(machine: FakeMachine, clock: Clock, folder: Path | None = None) -> PicoHal:
    store = CounterStore(str(folder)) if folder is not None else None
    assert sys.modules["machine"] is machine  # PicoHal imports it, as on the board
    return PicoHal(now_ms=clock, counter_store=store)


class BufferTransport:
    def __init__(self) -> None:
        self.rx = bytearray()
        self.tx = bytearray()
        self.decoder = FrameDecoder()

    def read(self) -> bytes:
        data = bytes(self.rx)
        self.rx.clear()
        return data

    def write(self, data: bytes) -> None:
        self.tx += data

    def frames(self) -> list[Frame]:
        out = self.decoder.feed(bytes(self.tx))
        self.tx.clear()
        return out


# -------------------------------------------------------------- import safety


def test_module_imports_without_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "machine", raising=False)
    importlib.reload(pico_main)
    assert "machine" not in sys.modules


def test_indicator_table_covers_every_pattern() -> None:
    assert sorted(INDICATOR_COLOURS) == sorted(Indicator.ALL)
    assert INDICATOR_COLOURS[Indicator.OFF][:3] == (0, 0, 0)
    assert INDICATOR_COLOURS[Indicator.OUT_OF_SERVICE][:3] == (1, 0, 0)


def test_pin_map_is_documented() -> None:
    doc = (Path(pico_main.__file__).parent.parent / "PROTOCOL.md").read_text()
    wiring = (Path(pico_main.__file__).parent / "README.md").read_text()
    assert "## Reference hardware" in doc and "## Wiring" in wiring
    for pin in (
        pico_main.PIN_RELAY,
        pico_main.PIN_LED_RED,
        pico_main.PIN_LED_GREEN,
        pico_main.PIN_LED_BLUE,
        pico_main.PIN_BUZZER,
        pico_main.PIN_OPT_OUT,
        pico_main.PIN_DOOR,
        pico_main.PIN_SERVICE,
    ):
        assert f"GP{pin}" in doc
        assert f"| GP{pin} |" in wiring
        assert f"GP{pin}" in pico_main.__doc__


# --------------------------------------------------------------------- relay


def test_relay_pin_is_configured_first_and_closed(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    first = machine.log[0]
    assert first == ("Pin", pico_main.PIN_RELAY, FakePin.OUT, 0)
    relay = machine.pins[pico_main.PIN_RELAY]
    assert relay.history == [0] and relay.level == 0
    assert not hal.relay_open
    hal.relay(True)
    assert relay.level == 1
    hal.relay(False)
    assert relay.level == 0


def test_boot_shows_out_of_service_and_buzzer_silent(machine: FakeMachine, clock: Clock) -> None:
    make_hal(machine, clock)
    levels = [machine.pins[p].level for p in (16, 17, 18)]
    assert levels == [1, 0, 0]  # red
    (pwm,) = machine.pwms
    assert pwm.pin.id == pico_main.PIN_BUZZER and pwm.duty == 0 and pwm.hz == pico_main.BUZZER_HZ
    assert machine.pins[pico_main.PIN_OPT_OUT].pull == FakePin.PULL_UP
    assert machine.pins[pico_main.PIN_DOOR].pull == FakePin.PULL_UP


def test_indicator_and_blink(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    rgb = [machine.pins[p] for p in (16, 17, 18)]
    hal.indicator(Indicator.GRANTED)
    assert [p.level for p in rgb] == [0, 1, 0]
    hal.indicator(Indicator.SEE_AGENT)  # blinking amber, 500 ms
    assert [p.level for p in rgb] == [1, 1, 0]
    clock.t += 500
    hal.service(clock.t)
    assert [p.level for p in rgb] == [0, 0, 0]
    clock.t += 500
    hal.service(clock.t)
    assert [p.level for p in rgb] == [1, 1, 0]
    hal.indicator(99)  # unknown: fail visibly
    assert [p.level for p in rgb] == [1, 0, 0]


def test_buzzer_chirp_ends_on_service(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    (pwm,) = machine.pwms
    hal.buzzer(100)
    assert pwm.duty == 32768 and hal.buzzing
    clock.t += 99
    hal.service(clock.t)
    assert pwm.duty == 32768
    clock.t += 1
    hal.service(clock.t)
    assert pwm.duty == 0 and not hal.buzzing


# ------------------------------------------------------------------ debounce


def test_debouncer_ignores_bounces_and_reports_once() -> None:
    db = Debouncer(False, settle_ms=30)
    t = 0
    for level in (1, 0, 1, 0, 1):  # contact bounce, 5 ms apart
        assert db.update(bool(level), t) is None
        t += 5
    assert db.update(True, t) is None  # high since t=20 only
    assert db.update(True, 49) is None
    assert db.update(True, 50) is True
    assert db.stable is True
    assert db.update(True, 500) is None  # held: no repeat
    assert db.update(False, 510) is None
    assert db.update(False, 540) is False


def test_button_press_debounced(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    button = machine.pins[pico_main.PIN_OPT_OUT]
    presses = 0

    def sample(level: int, ms: int) -> None:
        nonlocal presses
        button.level = level
        for _ in range(ms):
            clock.t += 1
            pressed, _ = hal.poll_inputs(clock.t)
            presses += pressed

    sample(0, 3)  # bounce while pressing
    sample(1, 2)
    sample(0, 4)
    sample(1, 1)
    assert presses == 0
    sample(0, 200)  # held down
    assert presses == 1
    sample(1, 3)  # bounce on release
    sample(0, 3)
    sample(1, 100)
    assert presses == 1
    sample(0, 40)
    assert presses == 2


def test_button_held_at_boot_is_not_a_press(machine: FakeMachine, clock: Clock) -> None:
    machine.input_levels[pico_main.PIN_OPT_OUT] = 0
    hal = make_hal(machine, clock)
    for _ in range(100):
        clock.t += 1
        assert hal.poll_inputs(clock.t) == (False, None)


def test_door_contact_debounced(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    assert not hal.door_open
    door = machine.pins[pico_main.PIN_DOOR]
    changes = []
    for level in [1, 0, 1] + [1] * 40 + [0] * 40:
        door.level = level
        clock.t += 1
        _, change = hal.poll_inputs(clock.t)
        if change is not None:
            changes.append(change)
    assert changes == [True, False]


# ------------------------------------------------------------ counter on flash


def test_counter_round_trip(tmp_path: Path) -> None:
    store = CounterStore(str(tmp_path))
    assert store.load() == (0, 0)  # fresh flash: both slots initialised
    assert all(os.path.exists(p) for p in store.paths)
    for state in ((0, 1), (0, 2), (0, 70000), (0, 0xFFFFFFFE), (1, 0), (1_767_225_600, 5)):
        store.store(*state)
        assert CounterStore(str(tmp_path)).load() == state


def test_counter_survives_torn_write(tmp_path: Path) -> None:
    store = CounterStore(str(tmp_path))
    store.load()
    store.store(0, 41)
    store.store(0, 42)
    again = CounterStore(str(tmp_path))
    assert again.load() == (0, 42)
    newest = next(p for p in again.paths if again._read(p) == (0, 42))
    Path(newest).write_bytes(b"GC2\x00")  # power cut while writing 42's slot
    third = CounterStore(str(tmp_path))
    assert third.load() == (0, 41)
    third.store(1, 0)  # overwrites the damaged slot, not the good one
    assert CounterStore(str(tmp_path)).load() == (1, 0)


def test_counter_both_slots_corrupt_locks_relay(tmp_path: Path) -> None:
    store = CounterStore(str(tmp_path))
    store.load()
    for p in store.paths:
        Path(p).write_bytes(b"garbage!")
    assert CounterStore(str(tmp_path)).load() == COUNTER_LOCKED
    assert COUNTER_LOCKED[0] == EPOCH_LOCKED


def test_a_locked_store_refuses_every_pulse_and_every_new_epoch(
    machine: FakeMachine, clock: Clock, tmp_path: Path
) -> None:
    """Both slots torn: no pulse is fresh and no epoch is above the store's, so only a
    deploy (which writes the store again) gets the gate back."""
    store = CounterStore(str(tmp_path))
    store.load()
    for p in store.paths:
        Path(p).write_bytes(b"GC2torn")
    hal = make_hal(machine, clock, tmp_path)
    link = BufferTransport()
    loop = MainLoop(FirmwareCore(hal, KEY), hal, link)
    loop.boot(ResetCause.POWER_ON)
    host = HostFrames(KEY)
    assert hello(loop, link, host) == Result.OK
    assert (host.epoch, host.last_counter) == COUNTER_LOCKED
    for counter in (1, 0xFFFFFFFF):
        pulse = pack_relay_pulse(host.keys, host.epoch, 200, counter)
        assert send(loop, link, MsgType.RELAY_PULSE, pulse, seq=2 + counter % 7) != Result.OK
    for epoch in (1, EPOCH_LOCKED):  # any epoch, even the top one, is not above it
        rotate = pack_new_epoch(host.keys, epoch)
        assert send(loop, link, MsgType.NEW_EPOCH, rotate, seq=9 + epoch % 3) != Result.OK
    assert machine.pins[pico_main.PIN_RELAY].history == [0, 0]  # never driven high


def test_counter_persists_across_reboot_through_core(
    machine: FakeMachine, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pulse accepted before a reboot can't be replayed after it."""
    hal = make_hal(machine, clock, tmp_path)
    link = BufferTransport()
    loop = MainLoop(FirmwareCore(hal, KEY), hal, link)
    loop.boot(ResetCause.POWER_ON)
    host = HostFrames(KEY)
    pulse = pack_relay_pulse(host.keys, 0, 200, 7)
    replay = send(loop, link, MsgType.RELAY_PULSE, pulse, seq=9)
    assert replay == Result.REJECTED_BAD  # no session yet
    assert hello(loop, link, host) == Result.OK
    assert send(loop, link, MsgType.RELAY_PULSE, pulse, seq=2) == Result.OK
    assert CounterStore(str(tmp_path)).load() == (0, 7)
    assert send(loop, link, MsgType.NEW_EPOCH, host.new_epoch(), seq=3) == Result.OK
    assert CounterStore(str(tmp_path)).load() == (1, 0)

    machine2 = FakeMachine()
    monkeypatch.setitem(sys.modules, "machine", machine2)
    hal2 = make_hal(machine2, clock, tmp_path)
    link2 = BufferTransport()
    loop2 = MainLoop(FirmwareCore(hal2, KEY), hal2, link2)
    loop2.boot(ResetCause.WATCHDOG)
    assert (loop2.core.epoch, loop2.core.last_counter) == (1, 0)
    assert hello(loop2, link2, host) == Result.OK
    stale = send(loop2, link2, MsgType.RELAY_PULSE, pulse, seq=3)
    assert stale == Result.REJECTED_AUTH  # signed in epoch 0
    assert machine2.pins[pico_main.PIN_RELAY].history == [0, 0]  # never driven high


def test_session_ids_come_from_the_boards_random_source(
    machine: FakeMachine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hal = make_hal(machine, clock)
    drawn: list[int] = []

    def urandom(n: int) -> bytes:
        drawn.append(n)
        return bytes(range(n))

    monkeypatch.setattr(os, "urandom", urandom)
    core = FirmwareCore(hal, KEY)
    core.boot()
    host = HostFrames(KEY, nonces=b"seeded")  # the host's nonces not from os.urandom here
    replies = FrameDecoder().feed(core.feed(host.frame(MsgType.HELLO, host.fresh_nonce())))
    assert host.read_status(replies[1], greeting=True) is not None
    assert drawn == [8] and host.session == bytes(range(8))


# ------------------------------------------------------------------ main loop


def send(loop: MainLoop, link: BufferTransport, msg_type: int, payload: bytes = b"", *, seq: int):
    return exchange(loop, link, msg_type, payload, seq=seq)[0]


def exchange(
    loop: MainLoop, link: BufferTransport, msg_type: int, payload: bytes = b"", *, seq: int
) -> tuple[int, list[Frame]]:
    """-> (the ACK's result, every frame the firmware sent)."""
    link.rx += Frame(msg_type, seq, payload).encode()
    loop.step()
    frames = link.frames()
    acks = [f for f in frames if f.msg_type == MsgType.ACK]
    assert acks, "no ACK"
    acked, result = unpack_ack(acks[0].payload)
    assert acked == seq
    return result, frames


def hello(loop: MainLoop, link: BufferTransport, host: HostFrames, seq: int = 1) -> int:
    """Greet the firmware; its STATUS must verify and gives ``host`` the session."""
    result, frames = exchange(loop, link, MsgType.HELLO, host.fresh_nonce(), seq=seq)
    statuses = [f for f in frames if f.msg_type == MsgType.STATUS]
    if result == Result.OK:
        assert host.read_status(statuses[0], greeting=True) is not None
    return result


def test_main_loop_drives_hardware(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    link = BufferTransport()
    wdt = machine.WDT(timeout=2000)
    loop = MainLoop(FirmwareCore(hal, KEY), hal, link, wdt)
    loop.boot(ResetCause.POWER_ON)
    (boot,) = link.frames()
    assert boot.msg_type == MsgType.BOOT
    relay = machine.pins[pico_main.PIN_RELAY]
    rgb = [machine.pins[p] for p in (16, 17, 18)]

    host = HostFrames(KEY)
    assert hello(loop, link, host) == Result.OK
    ready = host.session_command(MsgType.INDICATOR, pack_indicator(Indicator.READY))
    assert send(loop, link, MsgType.INDICATOR, ready, seq=2) == Result.OK
    assert [p.level for p in rgb] == [0, 0, 1]
    chirp = host.session_command(MsgType.BUZZER, pack_buzzer(50))
    assert send(loop, link, MsgType.BUZZER, chirp, seq=3) == Result.OK
    assert machine.pwms[0].duty == 32768
    assert send(loop, link, MsgType.RELAY_PULSE, host.relay_pulse(300, 1), seq=4) == 0
    assert relay.level == 1
    forged = pack_relay_pulse(ATTACKER, 0, 300, 2)
    assert send(loop, link, MsgType.RELAY_PULSE, forged, seq=5) == Result.REJECTED_AUTH

    for i in range(30):  # 300 ms of 10 ms loop iterations, host heartbeating
        clock.t += 10
        link.rx += Frame(MsgType.HEARTBEAT, 6 + i % 2, host.session_command(2)).encode()
        loop.step()
    assert relay.level == 0
    assert machine.pwms[0].duty == 0
    assert relay.history == [0, 0, 1, 0]  # constructor, boot(), pulse, end
    assert wdt.feeds == 5 + 30

    # Host silent: link lost -> FAULT, relay stays closed, red.
    link.frames()
    for _ in range(120):
        clock.t += 10
        loop.step()
    faults = [f for f in link.frames() if f.msg_type == MsgType.FAULT]
    assert len(faults) == 1
    assert [p.level for p in rgb] == [1, 0, 0]


def test_main_loop_reports_button_and_door(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)
    link = BufferTransport()
    loop = MainLoop(FirmwareCore(hal, KEY), hal, link)
    loop.boot(ResetCause.POWER_ON)
    link.frames()
    machine.pins[pico_main.PIN_OPT_OUT].level = 0
    machine.pins[pico_main.PIN_DOOR].level = 1
    for _ in range(10):
        clock.t += 5
        loop.step()
    got = {f.msg_type: f for f in link.frames()}
    assert MsgType.OPT_OUT_PRESSED in got
    assert unpack_u8(got[MsgType.DOOR].payload, "DOOR") == 1


def test_door_open_at_boot_is_reported(machine: FakeMachine, clock: Clock) -> None:
    machine.input_levels[pico_main.PIN_DOOR] = 1
    hal = make_hal(machine, clock)
    link = BufferTransport()
    MainLoop(FirmwareCore(hal, KEY), hal, link).boot(ResetCause.POWER_ON)
    types_ = [f.msg_type for f in link.frames()]
    assert types_ == [MsgType.BOOT, MsgType.DOOR]


def test_exception_in_loop_closes_relay(machine: FakeMachine, clock: Clock) -> None:
    hal = make_hal(machine, clock)

    class Broken(BufferTransport):
        def read(self) -> bytes:
            raise RuntimeError("uart on fire")

    loop = MainLoop(FirmwareCore(hal, KEY), hal, Broken())
    hal.relay(True)
    with pytest.raises(RuntimeError):
        loop.run(max_iterations=3)
    assert machine.pins[pico_main.PIN_RELAY].level == 0


def test_main_entry_point(machine: FakeMachine, tmp_path: Path) -> None:
    key_file = tmp_path / "gate_key.hex"
    key_file.write_text(KEY.hex() + "\n")
    machine.cause = machine.WDT_RESET
    pico_main.main(key_path=str(key_file), counter_dir=str(tmp_path), max_iterations=20)
    assert machine.log[0] == ("Pin", pico_main.PIN_RELAY, FakePin.OUT, 0)
    kinds = [entry[0] for entry in machine.log]
    assert kinds.index("UART") < kinds.index("WDT")
    (uart,) = machine.uarts
    assert uart.kw["baudrate"] == 115200
    frames = FrameDecoder().feed(bytes(uart.tx))
    assert frames[0].msg_type == MsgType.BOOT
    assert unpack_boot(frames[0].payload)[1] == ResetCause.WATCHDOG
    (wdt,) = machine.wdts
    assert wdt.feeds == 20
    assert machine.pins[pico_main.PIN_RELAY].level == 0
    assert all(os.path.exists(p) for p in CounterStore(str(tmp_path)).paths)


def test_service_jumper_keeps_the_gate_shut_and_the_repl_free(
    machine: FakeMachine, tmp_path: Path
) -> None:
    """With the jumper, main() returns at once: relay low, red, no UART, no watchdog (an
    unfed watchdog would reset the board out of the REPL), the key not even read."""
    machine.input_levels[pico_main.PIN_SERVICE] = 0
    pico_main.main(key_path=str(tmp_path / "absent.hex"), counter_dir=str(tmp_path))
    assert machine.log[0] == ("Pin", pico_main.PIN_RELAY, FakePin.OUT, 0)
    assert machine.pins[pico_main.PIN_RELAY].level == 0
    assert [machine.pins[p].level for p in (16, 17, 18)] == [1, 0, 0]
    assert machine.uarts == [] and machine.wdts == []


def test_main_without_key_stays_closed(machine: FakeMachine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing"):
        pico_main.main(key_path=str(tmp_path / "nope.hex"), counter_dir=str(tmp_path))
    assert machine.pins[pico_main.PIN_RELAY].history == [0, 0]
    assert machine.wdts == [] and machine.uarts == []


def test_load_key_validates(tmp_path: Path) -> None:
    short = tmp_path / "k"
    short.write_text("abcd")
    with pytest.raises(ValueError, match="at least 16"):
        pico_main.load_key(str(short))
    short.write_text("zz" * 16)
    with pytest.raises(ValueError, match="not hex"):
        pico_main.load_key(str(short))


# --------------------------------------------------------------------- misc


def test_ticks_clock_handles_wraparound() -> None:
    period = 1 << 30
    ticks = [period - 20]

    def ticks_ms() -> int:
        return ticks[0] % period

    def ticks_diff(a: int, b: int) -> int:
        return ((a - b + period // 2) % period) - period // 2

    clk = TicksClock(ticks_ms, ticks_diff)
    assert clk() == 0
    ticks[0] += 15
    assert clk() == 15
    ticks[0] += 15  # wraps here
    assert clk() == 30
    ticks[0] += 1000
    assert clk() == 1030


def test_usb_cdc_transport_reads_available_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    kbd = []
    fake_mp = types.ModuleType("micropython")
    fake_mp.kbd_intr = kbd.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "micropython", fake_mp)
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rin, os.fdopen(w, "wb", buffering=0) as win:
        out = BufferTransport()
        cdc = UsbCdcTransport(stdin=rin, stdout=out)
        assert kbd == [-1]
        assert cdc.read() == b""
        wire = Frame(MsgType.HELLO, 3, bytes(8)).encode() + b"\x03"
        win.write(wire)
        assert cdc.read() == wire
        cdc.write(b"abc")
        assert out.tx == b"abc"

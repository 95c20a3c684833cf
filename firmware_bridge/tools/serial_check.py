"""Bench/installation check of a real gate MCU on a serial port.

:func:`run_serial_test` walks through the protocol once — HELLO, STATUS, every
indicator pattern, a buzzer chirp and (only when asked) a relay pulse — and
prints one line per step.  It never raises for link problems: it reports them
and returns False, so it can back a ``gatectl serial test`` command.
"""

import time
from collections.abc import Callable

import serial

from firmware_bridge.host import CommandRejected, GateLink, LinkError, NotAuthentic, Status
from firmware_bridge.protocol import Indicator, Result

TEST_PULSE_MS = 500
CHIRP_MS = 80

_ERRORS = (LinkError, CommandRejected, ValueError, OSError, serial.SerialException)


def _describe(status: Status) -> str:
    return (
        f"relay {'OPEN' if status.relay_open else 'closed'}, "
        f"indicator {Indicator.name(status.indicator)}, "
        f"counter epoch {status.epoch} at {status.last_counter}, "
        f"heartbeat {'ok' if status.heartbeat_ok else 'NOT ok'}"
    )


def _reason(err: BaseException) -> str:
    if isinstance(err, CommandRejected) and err.result == Result.REJECTED_AUTH:
        return f"{err} (wrong relay key for this gate?)"
    if isinstance(err, NotAuthentic):
        return f"{err} (wrong relay key for this gate?)"
    if isinstance(err, LinkError):
        return f"link error: {err}"
    return str(err) or type(err).__name__


def run_serial_test(
    port: str,
    key: bytes,
    *,
    pulse: bool = False,
    out: Callable[[str], object] = print,
    dwell: float = 0.25,
) -> bool:
    """Exercise the MCU on ``port``; one ``out`` line per step; True if all passed.

    The relay is pulsed (``TEST_PULSE_MS``) only when ``pulse`` is True.
    ``dwell`` is how long each indicator pattern stays on, so a person can watch.
    """
    results: list[bool] = []

    def report(ok: bool, step: str, detail: str = "") -> bool:
        results.append(ok)
        out(f"[{'PASS' if ok else 'FAIL'}] {step}" + (f": {detail}" if detail else ""))
        return ok

    def finish() -> bool:
        ok = bool(results) and all(results)
        passed = sum(results)
        verdict = "PASSED" if ok else "FAILED"
        out(f"serial test on {port}: {verdict} ({passed}/{len(results)} steps passed)")
        return ok

    try:
        link = GateLink(port, key)
    except ValueError as e:
        report(False, "relay key", str(e))
        return finish()
    try:
        link.open()  # opens the port and says HELLO
    except _ERRORS as e:
        report(False, f"open {port} and HELLO", _reason(e))
        out("  check the cable, the port name (ls /dev/serial/by-id/) and that the MCU is powered")
        return finish()
    step = "HELLO"
    try:
        report(True, "HELLO", f"session established on {port}")
        if link.counter_fault is not None:
            report(False, "relay counter", link.counter_fault)

        step = "status"
        status = link.request_status()
        initial_indicator = status.indicator
        report(status.heartbeat_ok, "status", _describe(status))

        for pattern in Indicator.ALL:
            step = f"indicator {Indicator.name(pattern)}"
            link.set_indicator(pattern)
            shown = link.request_status().indicator
            report(shown == pattern, step, "" if shown == pattern else f"MCU shows {shown}")
            if dwell:
                time.sleep(dwell)

        step = "buzzer"
        link.buzzer(CHIRP_MS)
        report(True, "buzzer", f"{CHIRP_MS} ms chirp")

        if pulse:
            step = "relay pulse"
            try:
                _relay_pulse(link, report)
            except CommandRejected as e:  # e.g. wrong key: report, keep going
                report(False, step, _reason(e))
        else:
            out("[SKIP] relay pulse: not requested (use --pulse to click the relay)")

        step = "restore indicator"
        link.set_indicator(initial_indicator)
        step = "final status"
        status = link.request_status()
        report(not status.relay_open, "final status", _describe(status))
    except _ERRORS as e:
        report(False, step, _reason(e))
    finally:
        link.close()
    return finish()


def _relay_pulse(link: GateLink, report: Callable[..., bool]) -> None:
    link.pulse_relay(TEST_PULSE_MS)
    opened = link.request_status().relay_open
    # Poll for the MCU closing it again on its own (fail-secure end of pulse).
    deadline = time.monotonic() + TEST_PULSE_MS / 1000 + 3.0
    closed = False
    while time.monotonic() < deadline:
        if not link.request_status().relay_open:
            closed = True
            break
        time.sleep(0.05)
    if opened and closed:
        report(True, "relay pulse", f"{TEST_PULSE_MS} ms: opened and closed again")
    elif not opened:
        report(False, "relay pulse", "ACKed but the MCU never reported the relay open")
    else:
        link.close_relay()
        report(False, "relay pulse", "relay did not close by itself; sent RELAY_CLOSE")


__all__ = ["CHIRP_MS", "TEST_PULSE_MS", "run_serial_test"]

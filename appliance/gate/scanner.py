"""Scanner input at the gate: one parser for every reader.

:class:`ScanParser` turns one scanned line into a :class:`~gate_contract.bcbp.BoardingPass`,
an :class:`~appliance.gate.agents.AgentAction` (a signed agent action, checked by the
unit's :class:`~appliance.gate.agents.AgentRegistry`) or a :class:`ScanRefused`; it never
raises for bad input. The readers feed it:

* :class:`SerialScanner`: a serial (USB-CDC / RS-232) scanner via pyserial, scans split on a
  configurable terminator, a background thread calling back once per scan;
* :class:`StreamScanner`: a keyboard-wedge scanner or stdin, one scan per line.

A ScanRefused keeps the reason and the failing field/position, never the scanned text (a
boarding pass carries the traveller's name and booking reference).
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import serial

from appliance.gate.agents import AgentAction, AgentRefused, AgentRegistry
from gate_contract.bcbp import BoardingPass, parse_bcbp
from gate_contract.errors import BoardingPassError

log = logging.getLogger("gate.scanner")

DEFAULT_AGENT_PREFIX = "AGT:"
MAX_SCAN_CHARS = 2048  # a BCBP is at most a few hundred characters

# AIM symbology identifier some scanners put in front of the data: ]Q3 (QR), ]L2 (PDF417),
# ]d1 (Data Matrix), ]z0 (Aztec)... A BCBP itself never starts with ']'.
_AIM_ID_RE = re.compile(r"\][A-Za-z][0-9A-Za-z]")


@dataclass(frozen=True)
class ScanRefused:
    """Why a scan was not taken: the reason and the failing field, never the scanned text."""

    reason: str
    field: str | None = None
    position: int | None = None
    length: int = 0  # characters scanned (the text itself is not kept)


ScanResult = BoardingPass | AgentAction | ScanRefused


class ScanParser:
    """Dispatches one scanned line. ``reference_date`` (a date or a callable giving one,
    default today) resolves the pass's Julian dates."""

    def __init__(
        self,
        *,
        agent_prefix: str = DEFAULT_AGENT_PREFIX,
        reference_date: datetime.date | Callable[[], datetime.date] | None = None,
        agents: AgentRegistry | None = None,
    ) -> None:
        if not agent_prefix or agent_prefix.startswith("M"):
            # A prefix starting with 'M' would shadow boarding passes.
            raise ValueError(f"agent prefix {agent_prefix!r} must be non-empty, not start 'M'")
        self.agent_prefix = agent_prefix
        self._reference = reference_date
        # Agents can release the gate: only signed actions of registered agents count
        # (no registry: nobody can act).
        self.agents = agents or AgentRegistry()

    def _reference_date(self) -> datetime.date:
        ref = self._reference
        if ref is None:
            return datetime.date.today()
        return ref if isinstance(ref, datetime.date) else ref()

    def parse(self, scan: str | bytes) -> ScanResult:
        try:
            return self._parse(scan)
        except Exception:  # never let a scan take the gate down
            log.exception("scanner: unexpected error while parsing a scan")
            return ScanRefused("internal error while reading the scan")

    def _parse(self, scan: str | bytes) -> ScanResult:
        if isinstance(scan, bytes | bytearray):
            try:
                text = bytes(scan).decode("ascii")
            except UnicodeDecodeError as exc:
                return ScanRefused("scan is not ASCII", position=exc.start, length=len(scan))
        else:
            text = scan
        text = text.strip("\r\n")
        if _AIM_ID_RE.match(text):
            text = text[3:]
        if not text.strip():
            return ScanRefused("empty scan")
        if len(text) > MAX_SCAN_CHARS:
            return ScanRefused(f"scan longer than {MAX_SCAN_CHARS} characters", length=len(text))
        if text.startswith(self.agent_prefix):
            return self._agent(text)
        try:
            return parse_bcbp(text, reference_date=self._reference_date())
        except BoardingPassError as exc:
            return ScanRefused(
                f"not a valid boarding pass: {exc.message}",
                field=exc.field,
                position=exc.position,
                length=len(text),
            )

    def _agent(self, text: str) -> AgentAction | ScanRefused:
        try:
            return self.agents.verify_action(text[len(self.agent_prefix) :])
        except AgentRefused as exc:
            log.warning("scanner: agent action refused: %s", exc.reason)
            return ScanRefused(exc.reason, field="agent", length=len(text))


def _split_lines(buffer: bytearray, terminator: bytes) -> list[bytes]:
    """Complete scans in ``buffer`` (removed from it); the incomplete tail stays."""
    out: list[bytes] = []
    while True:
        i = buffer.find(terminator)
        if i < 0:
            return out
        out.append(bytes(buffer[:i]))
        del buffer[: i + len(terminator)]


class SerialScanner:
    """A serial barcode scanner: a background thread reads the port, splits scans on
    ``terminator`` and calls ``on_scan`` with each parsed result (in the thread).

    Blank scans (e.g. the '\\n' of a CR LF pair) are skipped; a scan longer than
    :data:`MAX_SCAN_CHARS` without a terminator is dropped as a ScanRefused. An error of the
    port ends the thread (``error`` says why); reconnecting is left to the owner.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        terminator: bytes = b"\r",
        on_scan: Callable[[ScanResult], None],
        parser: ScanParser | None = None,
        read_timeout: float = 0.05,
    ) -> None:
        if not terminator:
            raise ValueError("terminator must not be empty")
        self.port = port
        self.baudrate = baudrate
        self.terminator = bytes(terminator)
        self.on_scan = on_scan
        self.parser = parser or ScanParser()
        self.read_timeout = read_timeout
        self.error: BaseException | None = None
        self._serial: serial.Serial | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SerialScanner:
        if self._thread is not None:
            raise RuntimeError("scanner already started")
        self._serial = serial.Serial(self.port, self.baudrate, timeout=self.read_timeout)
        self._thread = threading.Thread(target=self._run, name="serial-scanner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._serial is not None:
            self._serial.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SerialScanner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _deliver(self, result: ScanResult) -> None:
        try:
            self.on_scan(result)
        except Exception:
            log.exception("scanner: on_scan callback failed")

    def _run(self) -> None:
        assert self._serial is not None
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                chunk = self._serial.read(max(1, self._serial.in_waiting))
                if not chunk:
                    continue
                buffer += chunk
                for line in _split_lines(buffer, self.terminator):
                    if line.strip(b"\r\n"):
                        self._deliver(self.parser.parse(line))
                if len(buffer) > MAX_SCAN_CHARS:
                    self._deliver(
                        ScanRefused(
                            f"no terminator within {MAX_SCAN_CHARS} characters",
                            length=len(buffer),
                        )
                    )
                    buffer.clear()
        except (serial.SerialException, OSError) as exc:
            if not self._stop.is_set():
                self.error = exc
                log.error("scanner: serial port %s failed: %s", self.port, exc)


class StreamScanner:
    """A keyboard-wedge scanner or stdin: one scan per line of a text or binary stream."""

    def __init__(
        self, stream: IO[str] | IO[bytes] | Iterable[str], *, parser: ScanParser | None = None
    ):
        self.stream = stream
        self.parser = parser or ScanParser()

    def __iter__(self) -> Iterator[ScanResult]:
        for line in self.stream:
            if line.strip("\r\n" if isinstance(line, str) else b"\r\n"):
                yield self.parser.parse(line)

    def run(self, on_scan: Callable[[ScanResult], None]) -> int:
        """Feed every scan to ``on_scan`` until the stream ends; returns the scan count."""
        count = 0
        for result in self:
            on_scan(result)
            count += 1
        return count


__all__ = [
    "DEFAULT_AGENT_PREFIX",
    "MAX_SCAN_CHARS",
    "ScanParser",
    "ScanRefused",
    "ScanResult",
    "SerialScanner",
    "StreamScanner",
]

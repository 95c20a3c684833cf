"""The configured barcode scanner, feeding each scanned line to the workflow.

A serial scanner runs :class:`appliance.gate.scanner.SerialScanner` (its own thread and
terminator); ``port = "stdin"`` runs :class:`appliance.gate.scanner.StreamScanner` over
standard input (a keyboard wedge) on a daemon thread. The workflow parses each line.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from appliance.gate.scanner import ScanRefused, SerialScanner, StreamScanner
from appliance.service.config import ScannerConfig

log = logging.getLogger("gate.service")


class RawLines:
    """Hands each scanned line over unparsed: ``GateWorkflow.scan`` parses it itself."""

    def parse(self, scan: str | bytes) -> str | bytes:
        return scan


class ScannerFeed:
    """The configured barcode scanner feeding ``on_line`` (one call per scan, in its thread).

    A serial scanner runs :class:`appliance.gate.scanner.SerialScanner` (its thread, its
    terminator); ``port = "stdin"`` runs :class:`appliance.gate.scanner.StreamScanner` over
    ``sys.stdin`` on a daemon thread. :meth:`close` returns only when no ``on_line`` call is
    in progress and none will start; a read blocked on stdin is left to the process exit.
    ``failed`` says why a serial scanner stopped (the service exits so systemd reopens it).
    """

    def __init__(self, spec: ScannerConfig, on_line: Callable[[str | bytes], None]) -> None:
        self.spec = spec
        self._on_line = on_line
        self._lock = threading.Lock()
        self._closed = False
        self._serial: SerialScanner | None = None
        self._thread: threading.Thread | None = None

    @property
    def failed(self) -> str | None:
        error = self._serial.error if self._serial is not None else None
        return None if error is None else f"{type(error).__name__}: {error}"

    def start(self) -> ScannerFeed:
        """Open the scanner (raises ``OSError``/``serial.SerialException``/``ValueError``)."""
        if self.spec.stdin:
            stream = sys.stdin
            if stream is None or stream.closed:
                raise OSError("stdin is not open")
            scanner = StreamScanner(stream, parser=RawLines())  # type: ignore[arg-type]
            self._thread = threading.Thread(
                target=self._read_stream, args=(scanner,), name="stdin-scanner", daemon=True
            )
            self._thread.start()
        else:
            self._serial = SerialScanner(
                self.spec.port,
                baudrate=self.spec.baudrate,
                terminator=self.spec.terminator_bytes,
                on_scan=self._deliver,
                parser=RawLines(),  # type: ignore[arg-type]
            ).start()
        return self

    def _read_stream(self, scanner: StreamScanner) -> None:
        try:
            for line in scanner:
                if self._closed:
                    return
                self._deliver(line)
        except (OSError, ValueError) as exc:  # stdin closed under the reader
            if not self._closed:
                log.warning("scanner: stdin failed: %s", exc)
            return
        if not self._closed:
            log.warning("scanner: stdin ended; no more scans (boarding passes, agent badges)")

    def _deliver(self, line: str | bytes | ScanRefused) -> None:
        with self._lock:
            if self._closed:
                return
            if isinstance(line, ScanRefused):  # e.g. no terminator in time
                log.warning("scan refused: %s", line.reason)
                return
            try:
                self._on_line(line)
            except Exception:  # a scan must never take the scanner thread down
                log.exception("scanner: handling a scan failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._serial is not None:
            self._serial.stop()


__all__ = ["RawLines", "ScannerFeed"]

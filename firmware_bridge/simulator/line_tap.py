"""An attacker on the serial line: a pseudo-terminal between the host and the MCU.

:class:`LineTap` opens the MCU's port (a :class:`~firmware_bridge.simulator.Simulator`'s
pty, or any serial device path), offers its own pty to the host (:attr:`LineTap.port`)
and forwards every byte both ways, frame by frame. On the way it can do what someone
with a wire on the UART (or a program writing to the port) can do: record every frame,
rewrite or drop the frames going to the host (recomputing their CRC, which protects
against noise, not people), hold back (drop) or rewrite the frames going to the MCU, and
inject frames of its own in either direction. It never
knows the relay key. The tests of the link's authentication and the attack benches use
it; it is also a tool for trying an attack by hand on a simulated gate.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import tty
from collections.abc import Callable
from types import TracebackType

from firmware_bridge.protocol import Frame, ProtocolError, decode_wire
from firmware_bridge.simulator.ptys import close_fds, open_raw_pty

# What a rewrite returns for one frame: its replacement, several frames in its place (the
# attacker inserting frames of its own at that moment), or None to drop it.
Rewrite = Callable[[Frame], Frame | list[Frame] | None]


class _Direction:
    """One way through the tap: bytes pending a delimiter, and the frames seen."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.frames: list[Frame] = []


class LineTap:
    """The man in the middle between the host (on :attr:`port`) and ``mcu_port``."""

    def __init__(self, mcu_port: str) -> None:
        self.mcu_port = mcu_port
        self.port = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mcu: int | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._up = _Direction()  # MCU -> host
        self._down = _Direction()  # host -> MCU
        self._rewrite: Rewrite | None = None  # frames to the host
        self._rewrite_down: Rewrite | None = None  # frames to the MCU
        self.rewritten = 0  # frames changed or dropped by a rewrite, both ways

    # --------------------------------------------------------------- lifecycle

    def start(self) -> LineTap:
        mcu = os.open(self.mcu_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(mcu)
        self._master, self._slave, self.port = open_raw_pty()
        self._mcu = mcu
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gate-line-tap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        close_fds((self._mcu, self._master, self._slave))
        self._mcu = self._master = self._slave = None

    def __enter__(self) -> LineTap:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- attacks

    def rewrite_to_host(self, rewrite: Rewrite | None) -> None:
        """From now on pass each frame for the host through ``rewrite``: what it returns
        is sent instead (re-encoded, with a valid CRC; a list sends each in turn), None
        drops the frame. None as ``rewrite`` stops rewriting."""
        with self._lock:
            self._rewrite = rewrite

    def rewrite_to_mcu(self, rewrite: Rewrite | None) -> None:
        """The same for each frame the host sends to the MCU: held back (None) or replaced."""
        with self._lock:
            self._rewrite_down = rewrite

    def inject_to_host(self, data: bytes) -> None:
        """Write ``data`` onto the host's receive line, between the MCU's frames."""
        with self._lock:
            self._write(self._master, data)

    def inject_to_mcu(self, data: bytes) -> None:
        """Write ``data`` onto the MCU's receive line, between the host's frames."""
        with self._lock:
            self._write(self._mcu, data)

    def frames_from_host(self) -> list[Frame]:
        """Every decodable frame the host sent, oldest first (the recording)."""
        with self._lock:
            return list(self._down.frames)

    def frames_from_mcu(self) -> list[Frame]:
        """Every decodable frame the MCU sent, before any rewrite, oldest first."""
        with self._lock:
            return list(self._up.frames)

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        while not self._stop.is_set():
            fds = [fd for fd in (self._master, self._mcu) if fd is not None]
            if len(fds) < 2:
                return
            try:
                readable, _, _ = select.select(fds, [], [], 0.01)
            except (OSError, ValueError):
                return
            for fd in readable:
                data = self._read(fd)
                if not data:
                    continue
                with self._lock:
                    if fd == self._mcu:
                        self._forward(self._up, data, self._master, self._rewrite)
                    else:
                        self._forward(self._down, data, self._mcu, self._rewrite_down)

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:  # EIO: nobody on the other side of that pty right now
            if exc.errno != errno.EIO:
                self._stop.set()
            self._stop.wait(0.01)
            return b""

    def _forward(
        self, way: _Direction, data: bytes, to: int | None, rewrite: Rewrite | None
    ) -> None:
        way.pending += data
        while True:
            end = way.pending.find(b"\x00")
            if end < 0:
                return
            piece = bytes(way.pending[: end + 1])
            del way.pending[: end + 1]
            frame = None
            if len(piece) > 1:
                with contextlib.suppress(ProtocolError):
                    frame = decode_wire(piece)
            if frame is not None:
                way.frames.append(frame)
                if rewrite is not None:
                    replaced = rewrite(frame)
                    if replaced != frame:
                        self.rewritten += 1
                        if replaced is None:
                            replaced = []
                        elif isinstance(replaced, Frame):
                            replaced = [replaced]
                        piece = b"".join(f.encode() for f in replaced)
            self._write(to, piece)

    @staticmethod
    def _write(fd: int | None, data: bytes) -> None:
        if fd is None or not data:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                select.select([], [fd], [], 0.01)  # the reader is behind: wait for room
                continue
            except OSError:
                return
            view = view[n:]


__all__ = ["LineTap", "Rewrite"]

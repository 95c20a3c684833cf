"""A TCP proxy that can partition a link: traffic held back, not refused.

While ``partitioned`` no byte moves in either direction and new connections are taken
but not passed on, as when a network drops packets: the peers see silence, never a
reset, and TCP buffers what was in flight. When the partition ends the bytes flow on
where they stopped.
"""

from __future__ import annotations

import contextlib
import socket
import threading

POLL_S = 0.05


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` (host, port) on threads."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_S)
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    def partition(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        while not self._flowing.wait(POLL_S):  # a SYN taken during a partition waits
            if self._closed.is_set():
                client.close()
                return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()  # the service itself is down: that is a refusal, passed on
            return
        with self._lock:
            self._sockets += [client, server]
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        source.settimeout(POLL_S)
        try:
            while not self._closed.is_set():
                if not self._flowing.wait(POLL_S):
                    continue  # partitioned: nothing is read, nothing passed on
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                while not self._flowing.is_set() and not self._closed.is_set():
                    self._flowing.wait(POLL_S)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


__all__ = ["POLL_S", "TcpProxy"]

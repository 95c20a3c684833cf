"""An IP camera of our own: MJPEG over HTTP, as OpenCV opens ``http://.../stream.mjpg``.

What it shows is set while it runs (:meth:`MjpegCamera.show`): a scene by name (an empty
lane, a traveller: JPEGs made once from the bench's input photos), or a fault: ``hang``
(the stream stays open and sends nothing), ``garbage`` (parts that are not JPEGs).
:meth:`refuse` closes the port (connections refused) until :meth:`serve` opens it again.
The frames are the bench's input, served on loopback; nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "gateframe"
FPS = 20.0


class MjpegCamera:
    def __init__(self, scenes: dict[str, np.ndarray], fps: float = FPS) -> None:
        self._jpegs = {}
        for name, frame in scenes.items():
            ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise ValueError(f"scene {name!r} did not encode")
            self._jpegs[name] = encoded.tobytes()
        self.mode = next(iter(self._jpegs))
        self.interval_s = 1.0 / fps
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self._generation = 0
        self.serve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def show(self, mode: str) -> None:
        if mode not in self._jpegs and mode not in ("hang", "garbage"):
            raise ValueError(f"no scene {mode!r}")
        self.mode = mode

    def serve(self) -> None:
        if self._server is not None:
            return
        camera = self
        generation = self._generation

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:  # quiet
                return

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                try:
                    while camera._generation == generation:
                        mode = camera.mode
                        if mode == "hang":
                            time.sleep(camera.interval_s)
                            continue
                        body = os.urandom(20_000) if mode == "garbage" else camera._jpegs[mode]
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n".encode()
                            + body
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        time.sleep(camera.interval_s)
                except OSError:
                    return

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._server = server

    def refuse(self) -> None:
        """Close the port and end every stream: the camera refuses connections."""
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        self.refuse()


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


__all__ = ["BOUNDARY", "FPS", "MjpegCamera"]

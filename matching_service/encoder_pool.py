"""A pool of encoder processes, so concurrent gates are encoded in parallel.

dlib holds the GIL while it detects and describes a face, so threads in one process
encode one capture at a time however many gates are waiting. ``EncoderPool`` runs
``workers`` processes (default: one per CPU), each loading its own instance of the
recognizer once (recognizers are not shareable across threads, and onnxruntime's thread
pools do not survive a fork), and hands each live capture's JPEG bytes to one of them.

Where the live capture goes, and what is zeroized:

* The JPEG bytes cross to the worker through a ``multiprocessing`` pipe, in memory
  only: nothing is written to disk (no temporary file, no shared-memory file).
* In the worker, the payload is held in a ``bytearray``; it and the decoded image are
  overwritten with zeros (``fill(0)``) before the worker answers, whether the encoding
  worked or not. the recognizer's ``encode`` zeroizes its own copies.
* Not reachable for zeroization: pickle moves the payload as transient ``bytes``
  objects, in the calling process (the pickled call, written to the pipe) and in the
  worker (the message read from the pipe and the bytes it is unpickled from). They are
  immutable, owned by ``multiprocessing`` and released as soon as the call has crossed
  the pipe, but their memory is freed, not overwritten. The same goes for the
  descriptor on its way back (a template, not pixels). The caller's own buffer stays
  the caller's to zeroize (the matching service does).

Each worker runs single-threaded (onnxruntime with one intra-op thread): N workers for N
cores, never a thread pool inside each that would oversubscribe them.

Workers start with the ``forkserver`` method (``spawn`` where there is none), never a
bare ``fork``: the gRPC server's threads must not be copied into a child mid-call. A
worker that dies (killed, out of memory) fails the calls in flight at that moment
(``EncoderPoolError``; the service answers those gates ``INTERNAL``) and the pool
starts fresh workers for the next call.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np

from matching_service.errors import EncoderPoolError, UndecodableImage
from matching_service.image_size import check_decoded_size
from matching_service.recognizers import (
    DEFAULT_RECOGNIZER,
    Recognizer,
    RecognizerInfo,
    open_recognizer,
    recognizer_info,
)

__all__ = ["ENCODE_TIMEOUT_S", "EncoderPool"]

ENCODE_TIMEOUT_S = 60.0


# --- in the worker process ------------------------------------------------------------

_encoder: Recognizer | None = None
_started = None  # a Barrier of all workers, so start-up checks each one


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the service process is gone, however it ended
        os._exit(0)


def _load_encoder(started, recognizer: str) -> None:
    """Initializer: each worker loads the model once."""
    global _encoder, _started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops its workers itself
    # A worker waits on its call queue forever; if the service dies without closing the
    # pool (SIGKILL, crash), this ends the worker instead of leaving an orphan behind.
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    _encoder = open_recognizer(recognizer)
    _started = started


def _ready(timeout_s: float) -> int:
    """Runs once in every worker at start: all wait for each other, so none takes two."""
    if _encoder is None or _started is None:
        raise EncoderPoolError("encoder worker has no model loaded")
    _started.wait(timeout_s)
    return os.getpid()


def _encode_jpeg(data: bytes | bytearray) -> np.ndarray:
    """Decode and encode in the worker; the payload and the decoded image are zeroized."""
    buffer = data if isinstance(data, bytearray) else bytearray(data)
    raw = np.frombuffer(buffer, np.uint8)  # a writable view: filling it zeroizes ``buffer``
    image = None
    try:
        if raw.size:
            check_decoded_size(buffer)  # before the decoder allocates: no decompression bomb
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
        if image is None:
            raise UndecodableImage(f"capture is not a decodable image ({raw.size} bytes)")
        assert _encoder is not None, "worker initializer did not run"
        return _encoder.encode(image)
    finally:
        raw.fill(0)
        if image is not None:
            image.fill(0)


# --- in the service process -----------------------------------------------------------


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class EncoderPool:
    """``workers`` processes that turn JPEG bytes into templates of ``recognizer``.

    ``encode_jpeg`` is safe to call from many threads at once; each call occupies one
    worker. The constructor returns once every worker has loaded its model.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        recognizer: str = DEFAULT_RECOGNIZER,
        timeout_s: float = ENCODE_TIMEOUT_S,
    ):
        self.info: RecognizerInfo = recognizer_info(recognizer)
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1:
            raise ValueError("an encoder pool needs at least one worker")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._closed = False
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = _context()
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_load_encoder,
            initargs=(context.Barrier(self.workers), self.info.name),
        )
        try:
            # One call per worker, all waiting on one barrier: each worker takes exactly
            # one, so this returns when every worker has loaded its model.
            ready = [executor.submit(_ready, self.timeout_s) for _ in range(self.workers)]
            for future in ready:
                future.result(timeout=self.timeout_s)
        except BaseException as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            if isinstance(exc, Exception):
                raise EncoderPoolError(f"encoder workers failed to start: {exc!r}") from exc
            raise
        return executor

    def encode_jpeg(self, data: bytes | bytearray) -> np.ndarray:
        """The template of the largest face in the JPEG ``data``.

        Raises ``NoFaceFound`` (no usable face), ``UndecodableImage`` (not an image)
        or ``EncoderPoolError`` (the pool is closed, a worker died or timed out).
        ``data`` is only read; zeroizing it stays with the caller.
        """
        with self._lock:
            if self._closed:
                raise EncoderPoolError("encoder pool is closed")
            executor = self._executor
        try:
            try:
                future = executor.submit(_encode_jpeg, data)
            except BrokenProcessPool:
                # A worker died while idle; this capture never left, so it goes to the
                # fresh workers.
                future = self._restart(executor).submit(_encode_jpeg, data)
        except RuntimeError as exc:  # closed meanwhile (or broken again at once)
            raise EncoderPoolError(f"encoder pool unavailable: {exc}") from exc
        try:
            return future.result(timeout=self.timeout_s)
        except BrokenProcessPool as exc:
            self._restart(executor)
            raise EncoderPoolError("an encoder worker died; workers restarted") from exc
        except FutureTimeout as exc:
            future.cancel()
            raise EncoderPoolError(f"encoding took longer than {self.timeout_s:g} s") from exc

    def _restart(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """Replace a broken executor once, however many calls saw it break."""
        with self._lock:
            if self._closed:
                raise EncoderPoolError("encoder pool is closed")
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._start()
            return self._executor

    def pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring and tests)."""
        with self._lock:
            processes = getattr(self._executor, "_processes", None) or {}
            return sorted(processes)

    def close(self) -> None:
        """Stop the workers; calls after this raise ``EncoderPoolError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor = self._executor
        executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> EncoderPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

"""Run by ``board.mjs`` in every fresh interpreter, before boot.py: make it behave like flash.

* errno: the webassembly port raises OSError with emscripten's numbers (ENOENT = 44)
  while its ``errno`` module has MicroPython's (ENOENT = 2), so code that compares
  ``e.errno == errno.ENOENT``, mpremote's file commands among it, misreads them.
  Re-raise with the numbers a Pico uses.
* os.urandom: the webassembly port has none (a Pico's comes from the RP2040's ring
  oscillator); the firmware draws its session ids from it, so it comes from node's
  ``crypto.randomBytes`` here.
* write-through: a file written and closed is on the host's flash folder at once, so a
  power cut (the host ending the emulator) keeps it, as flash does.
"""

import builtins
import os

import js

# emscripten's number -> the Pico's (Linux numbering; MicroPython's errno module names
# only some of them)
_EMSCRIPTEN_TO_MICROPYTHON = {
    44: 2,  # ENOENT
    20: 17,  # EEXIST
    54: 20,  # ENOTDIR
    31: 21,  # EISDIR
    28: 22,  # EINVAL
    55: 39,  # ENOTEMPTY
    2: 13,  # EACCES
    29: 5,  # EIO
    8: 9,  # EBADF
    51: 28,  # ENOSPC
    48: 12,  # ENOMEM
}


def _with_pico_errno(fn):
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            number = exc.args[0] if exc.args else None
            if number in _EMSCRIPTEN_TO_MICROPYTHON:
                raise OSError(_EMSCRIPTEN_TO_MICROPYTHON[number]) from None
            raise

    return call


if not hasattr(os, "urandom"):

    def _urandom(n):
        return bytes.fromhex(js.board.randomHex(n))

    os.urandom = _urandom

for _name in ("stat", "mkdir", "rmdir", "remove", "rename", "listdir", "ilistdir", "chdir"):
    if hasattr(os, _name):
        setattr(os, _name, _with_pico_errno(getattr(os, _name)))


class _WrittenFile:
    """A file opened for writing; closing it copies the flash out to the host."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        return self._handle.write(data)

    def read(self, *args):
        return self._handle.read(*args)

    def flush(self):
        return self._handle.flush()

    def close(self):
        self._handle.close()
        js.board.flashWritten()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_open = _with_pico_errno(builtins.open)


def _flash_open(path, mode="r", *args, **kwargs):
    handle = _open(path, mode, *args, **kwargs)
    if "w" in mode or "a" in mode or "+" in mode:
        return _WrittenFile(handle)
    return handle


builtins.open = _flash_open

"""Every file a process tree writes, seen from the kernel's side (strace), not Python's.

Python's audit hook (``testbed.write_audit``) misses writes made by native code: a
library's own cache, OpenCV's writers, a child process. ``traced_run`` runs a command
under ``strace -f`` and records, for every process of the tree, each file opened for
writing, each rename or link target, and the first bytes of every ``write`` to a regular
file (enough to see a JPEG or PNG signature, raw or base64, leave the process). Pipes,
sockets and devices are not files on disk and are left out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.write_audit import contains_image_data

HEAD_BYTES = 64  # bytes of each write kept from the trace
_SYSCALLS = "openat,open,creat,write,pwrite64,writev,rename,renameat,renameat2,link,linkat"
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)")
_HEX = r"(?:\\x[0-9a-f]{2})*"  # strace -xx prints every string and path as \xNN escapes
_FD_PATH = re.compile(rf"^\d+<(?P<path>{_HEX})>")
_STRING = re.compile(rf'"({_HEX})"')
_RESULT_PATH = re.compile(rf"= \d+<(?P<path>{_HEX})>")


class TraceUnavailable(RuntimeError):
    """strace is missing or may not trace here (e.g. ptrace forbidden in a container)."""


@dataclass
class NativeWrites:
    """What a traced process tree wrote to files."""

    returncode: int
    stdout: str
    stderr: str
    paths: set[str] = field(default_factory=set)  # opened for writing, renamed or linked to
    image_heads: list[str] = field(default_factory=list)  # files a write began an image in

    def under(self, *roots: Path) -> set[str]:
        """The written paths outside every one of ``roots``."""
        resolved = [os.path.realpath(r) for r in roots]
        return {
            p
            for p in self.paths
            if not any(os.path.realpath(p).startswith(r.rstrip("/") + "/") for r in resolved)
        }

    def image_files(self) -> list[str]:
        """Written files that still exist and hold image data, plus writes that began one."""
        found = set(self.image_heads)
        for path in self.paths:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue  # gone (a temporary file) or not a regular file
            if contains_image_data(data):
                found.add(path)
        return sorted(found)


def _is_file(path: str) -> bool:
    return path.startswith("/") and not path.startswith(("/dev/", "/proc/", "/sys/"))


def _bytes(escaped: str) -> bytes:
    return bytes.fromhex(escaped.replace("\\x", ""))


def _path(escaped: str) -> str:
    return os.fsdecode(_bytes(escaped))


def _parse(log: str, result: NativeWrites) -> None:
    for line in log.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue  # a "<... resumed>" tail, a signal or an exit line
        call, args = match.group("call"), match.group("args")
        if call in ("openat", "open", "creat"):
            opened = _RESULT_PATH.search(args)
            writing = call == "creat" or any(flag in args for flag in _WRITE_FLAGS)
            if opened and writing and _is_file(_path(opened.group("path"))):
                result.paths.add(_path(opened.group("path")))
        elif call in ("write", "pwrite64", "writev"):
            target = _FD_PATH.match(args)
            if target is None or not _is_file(_path(target.group("path"))):
                continue
            path = _path(target.group("path"))
            result.paths.add(path)
            data = _STRING.search(args)
            if data is not None and contains_image_data(_bytes(data.group(1))):
                result.image_heads.append(path)
        elif "= 0" in args:  # rename*, link*: the new name is the last path argument
            names = _STRING.findall(args)
            if names and _is_file(_path(names[-1])):
                result.paths.add(_path(names[-1]))


def traced_run(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 600.0,
) -> NativeWrites:
    """Run ``argv`` under strace; raises :class:`TraceUnavailable` if it cannot trace."""
    strace = shutil.which("strace")
    if strace is None:
        raise TraceUnavailable("strace is not installed (apt-get install strace)")
    fast = ["--seccomp-bpf"]  # stop only on the traced calls: the traced run stays quick
    for options in (fast, []):
        probe = subprocess.run(
            [strace, "-f", *options, "-qq", "-o", os.devnull, "true"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            break
    else:
        raise TraceUnavailable(f"strace cannot trace here: {probe.stderr.strip()}")
    command = [
        strace,
        "-f",
        *options,
        "-qq",
        "-y",  # file descriptors with their paths
        "-xx",  # every string as hex escapes
        "-s",
        str(HEAD_BYTES),
        "-e",
        f"trace={_SYSCALLS}",
        "-o",
        str(log_path),
        *argv,
    ]
    done = subprocess.run(
        command,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    result = NativeWrites(done.returncode, done.stdout, done.stderr)
    _parse(log_path.read_text(errors="replace"), result)
    return result


__all__ = ["HEAD_BYTES", "NativeWrites", "TraceUnavailable", "traced_run"]

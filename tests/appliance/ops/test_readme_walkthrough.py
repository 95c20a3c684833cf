"""The README's provisioning walkthrough works exactly as written: its bash block is run
as it stands (only the two ports are chosen free, through the variables it reads)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

BLOCK = re.compile(r"<!-- walkthrough:begin -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", re.S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    script = BLOCK.search((REPO / "README.md").read_text()).group(1)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["MATCHER_PORT"], env["ENROLL_PORT"] = str(_free_port()), str(_free_port())
    env["TMPDIR"] = str(tmp_path)
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=env,
        start_new_session=True,  # everything it starts in the background is ours to stop
    )
    try:
        out, _ = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    assert process.returncode == 0, out
    assert "Traceback" not in out
    assert "selftest PASSED" in out
    assert "now      SERVING" in out and "session  open; flight gallery 2" in out
    assert '+port = "/dev/pts/' in out  # the second provision changed the port only
    assert re.search(r"the gate service \(pid \d+\) boards BA0117", out), out
    assert "flight   BA0117" in out.split("boards BA0117")[-1]

"""`gatectl bench faults` usage errors: one line, before any process is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.bench.faults import bench_faults


def test_keep_creates_its_folder_or_says_why_not(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"cannot keep the rows' files in .*Not a directory"):
        bench_faults(["camera_garbage"], keep=blocker / "rows")


def test_an_unknown_fault_is_named() -> None:
    with pytest.raises(ValueError, match="unknown faults: no_such_fault"):
        bench_faults(["no_such_fault"])

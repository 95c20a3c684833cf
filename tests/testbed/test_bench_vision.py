"""The vision benchmark runs on images that packages ship, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_vision_on_packaged_images_prints_its_figures(demo_photos):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "bench", "vision", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "frames",
        "ms_median",
        "ms_p99",
        "recall",
        "false_faces_nonface",
        "peer_ms_median",
        "peer_recall",
        "speedup",
    ):
        assert key in figures
    assert figures["face_frames"] == 5 and figures["frames"] > figures["face_frames"]
    assert figures["recall"] == 1.0
    assert figures["false_faces_nonface"] == 0
    assert figures["ms_median"] > 0 and figures["peer_ms_median"] > 0

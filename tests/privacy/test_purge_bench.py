"""`bench_purge` runs and reports what `gatectl bench purge --json` prints (no timing asserts)."""

from __future__ import annotations

from testbed.bench.purge import bench_purge


def test_bench_purge_small_run() -> None:
    result = bench_purge(5)
    assert {"purge_us_p50", "purge_us_p99", "image_files_written", "transactions"} <= set(result)
    assert result["transactions"] == 5
    assert result["image_files_written"] == 0
    assert result["buffers_per_transaction"] == 4  # frame, crop, JPEG, sealed payload
    assert result["bytes_zeroized_per_transaction"] > 1280 * 720 * 3
    assert 0 < result["purge_us_p50"] <= result["purge_us_p99"] <= result["purge_us_max"]

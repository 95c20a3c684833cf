"""The matcher benchmark over the real gRPC path, on a small slice of faces-dev."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matching_service import cli
from matching_service.errors import BenchError
from testbed.bench.matcher import bench_matcher
from tests.support import DATASET

KEYS = {
    "identities",
    "probes",
    "fnmr_at_fmr_1e-3",
    "fnmr_at_fmr_1e-4",
    "fpir_at_threshold_1toN",
    "failure_to_acquire",
    "ms_per_template",
    "grpc_fnir",
    "grpc_fpir",
    "rank1",
    "verify_ms_p50",
    "verify_ms_p99",
    "verifies_per_s",
    "gates",
}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    if not DATASET.is_dir():
        pytest.skip(f"faces-dev dataset not found at {DATASET}; bench tests need it")
    root = tmp_path_factory.mktemp("faces-slice")
    for folder in sorted(p for p in DATASET.iterdir() if p.is_dir())[:10]:
        (root / folder.name).mkdir()
        for photo in sorted(folder.glob("*.jpg"))[:3]:
            (root / folder.name / photo.name).symlink_to(photo)  # read in place, never copied
    return root


@pytest.mark.parametrize("recognizer", ["dlib", "mobilefacenet"])
def test_bench_drives_the_grpc_path_with_concurrent_gates(small_dataset, recognizer):
    from tests.support import require_recognizer

    require_recognizer(recognizer)
    result = bench_matcher(
        small_dataset, gates=3, recognizer=recognizer, photos_per_traveller=2, emit=lambda _: None
    )
    assert set(result) >= KEYS
    assert result["identities"] == 10 and result["gates"] == 3
    assert result["recognizer"] == recognizer and result["photos_per_traveller"] == 2
    assert result["impostor_identities"] == 2 and result["gallery"] >= 6
    assert result["probes"] == result["genuine_probes"] + result["impostor_probes"] > 0
    assert result["genuine_probes"] == result["gallery"]  # 3 photos: 2 documents, 1 live
    assert result["errors"] == 0
    assert 0 <= result["grpc_fnir"] <= 1 and 0 <= result["rank1"] <= 1
    assert result["rank1"] >= 0.5, "rank-1 on faces-dev should be far above chance"
    assert result["ms_per_template"] == pytest.approx(2 * result["ms_per_photo"], abs=0.2)
    assert 0 < result["verify_ms_p50"] <= result["verify_ms_p99"]


def test_cli_prints_one_json_line_last(small_dataset, tmp_path, capsys):
    code = cli.main(
        ["--db", str(tmp_path / "x.sqlite"), "bench", "--dataset", str(small_dataset),
         "--gates", "2", "--photos-per-traveller", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) >= KEYS and summary["gates"] == 2


def test_missing_or_tiny_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        bench_matcher(tmp_path / "nope")
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(BenchError, match="at least 5"):
        bench_matcher(tmp_path / "one")


def test_photos_per_traveller_beyond_the_dataset_is_a_clear_error(small_dataset):
    with pytest.raises(BenchError, match="more than 3 photos"):
        bench_matcher(small_dataset, photos_per_traveller=3, emit=lambda _: None)

"""Operating points: 1:1 at a target FMR, 1:N at a target FPIR for the gallery's size."""

from __future__ import annotations

import numpy as np
import pytest

from matching_service.thresholds import (
    TARGET_FPIR,
    OperatingPoints,
    ThresholdTable,
    load_defaults,
    per_comparison_fmr,
    threshold_at_fmr,
)


def test_threshold_at_fmr():
    impostor = np.linspace(0.3, 1.3, 10_000)
    t = threshold_at_fmr(impostor, 0.001)
    assert np.mean(impostor <= t) <= 0.001
    assert np.mean(impostor <= impostor[10]) > 0.001  # and not needlessly strict


def test_per_comparison_fmr_for_a_gallery():
    assert per_comparison_fmr(0.003, 1) == pytest.approx(0.003)
    assert per_comparison_fmr(0.003, 48) == pytest.approx(0.003 / 48, rel=0.01)
    with pytest.raises(ValueError):
        per_comparison_fmr(0.003, 0)


@pytest.fixture(scope="module")
def impostor_model():
    """Impostor distances drawn from a normal law, like real ones (mean 1.0, sd 0.12)."""
    rng = np.random.default_rng(7)
    return rng, OperatingPoints.fit("x/1", 1, rng.normal(1.0, 0.12, 400_000), "synthetic")


def fpir(rng, threshold: float, gallery: int, searches: int = 20_000) -> float:
    nearest = rng.normal(1.0, 0.12, (searches, gallery)).min(axis=1)
    return float(np.mean(nearest <= threshold))


@pytest.mark.parametrize("gallery", [48, 200, 400])
def test_one_to_many_threshold_holds_the_fpir_where_the_1to1_one_does_not(impostor_model, gallery):
    """The control: the 1:1 threshold in a 1:N search gives FPIR ~ N x FMR (the old bug)."""
    rng, points = impostor_model
    assert fpir(rng, points.one_to_one(), gallery) > 10 * TARGET_FPIR
    assert fpir(rng, points.one_to_many(gallery), gallery) <= TARGET_FPIR * 1.5


def test_thresholds_get_stricter_with_the_gallery_and_the_tail_is_conservative(impostor_model):
    _, points = impostor_model
    sizes = [1, 10, 48, 100, 400, 5000]
    thresholds = [points.one_to_many(n) for n in sizes]
    assert thresholds == sorted(thresholds, reverse=True)
    exact = 1.0 - 0.12 * 4.753  # the normal law's quantile at 1e-6
    assert points.threshold(1e-6) < exact  # beyond what was counted: errs on the strict side


def test_too_few_impostor_pairs_and_bad_rates_are_refused():
    with pytest.raises(ValueError, match="too few"):
        OperatingPoints.fit("x/1", 1, np.ones(100), "tiny")
    points = OperatingPoints.fit("x/1", 1, np.linspace(0, 1, 5000), "flat")
    with pytest.raises(ValueError):
        points.threshold(0)


def test_table_picks_the_calibration_for_the_templates_photo_count():
    impostor = np.linspace(0.2, 1.2, 5000)
    table = ThresholdTable(
        [OperatingPoints.fit("x/1", k, impostor + 0.01 * k, "s") for k in (1, 3)]
    )
    assert table.for_template("x/1", 1).photos == 1
    assert table.for_template("x/1", 2).photos == 1  # largest calibrated K at most 2
    assert table.for_template("x/1", 7).photos == 3
    assert not table.knows("y/2")
    with pytest.raises(KeyError):
        table.for_template("y/2", 1)


def test_json_round_trip_and_shipped_defaults_cover_both_recognizers():
    defaults = load_defaults()
    ids = {p.template_id.split("/")[0] for p in defaults}
    assert ids == {"dlib-resnet-128-unit", "mobilefacenet-192"}
    for p in defaults:
        assert OperatingPoints.from_json(p.to_json()) == p
        assert p.one_to_many(48) < p.one_to_one()

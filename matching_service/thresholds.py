"""Operating points: the distance thresholds a recognizer matches at, for 1:1 and for 1:N.

A threshold depends on the recognizer (its template id), on how many document photos
were fused into the template (K) and, for a 1:N search, on the gallery's size: every
extra traveller is another chance of a false match, so a search over N templates at a
false positive identification rate (FPIR) needs each comparison's false match rate near
``1 - (1 - FPIR) ** (1 / N)`` (about FPIR / N). Using the 1:1 threshold for 1:N is what
gave FPIR 4 % at N = 48 instead of 0.3 %.

:class:`OperatingPoints` holds, per (template id, K), the impostor-distance quantiles a
calibration could estimate (at least ``MIN_PAIRS`` impostor pairs beyond each) and an
exponential model of the impostor distances' lower tail, fitted below the 1 % quantile,
for the rates too small to count directly (large flights). The exponential tail is
heavier than the near-Gaussian tail impostor distances have, so beyond the counted
range it errs on the strict side.

Defaults calibrated on faces-dev ship in ``default_calibrations.json`` (made by
``gate-matcher calibrate --dataset faces-dev --output ...``); a calibration on the
operator's own data, saved into the gallery database with ``calibrate --save``, takes
precedence.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_FMR = 1e-3  # 1:1 (Frontex ABC guidelines: verification at FAR 0.1 %)
TARGET_FPIR = 0.003  # 1:N over one flight's gallery (NIST IR 8381's operating point)
TAIL_FMR = 1e-2  # the tail model is fitted to impostor distances below this quantile
MIN_PAIRS = 20  # an empirical quantile needs at least this many impostor pairs beyond it
QUANTILES = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
DEFAULTS_FILE = Path(__file__).with_name("default_calibrations.json")


def per_comparison_fmr(fpir: float, gallery_size: int) -> float:
    """The FMR of one comparison that gives ``fpir`` over ``gallery_size`` independent ones."""
    if gallery_size < 1:
        raise ValueError("a gallery has at least one template")
    return -math.expm1(math.log1p(-fpir) / gallery_size)


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """Largest distance threshold whose false match rate on ``impostor`` is <= ``fmr``."""
    ordered = np.sort(impostor)
    allowed = int(np.floor(fmr * len(ordered)))  # impostor pairs that may fall at/below
    return float(np.nextafter(ordered[allowed], -np.inf))


@dataclass(frozen=True)
class OperatingPoints:
    """Thresholds of one recognizer for templates fused from ``photos`` photos."""

    template_id: str
    photos: int
    quantiles: tuple[tuple[float, float], ...]  # (fmr, threshold), fmr descending
    tail_anchor: float  # impostor distance at TAIL_FMR
    tail_scale: float  # mean excess below the anchor (exponential tail)
    impostor_pairs: int
    source: str

    @classmethod
    def fit(cls, template_id: str, photos: int, impostor: np.ndarray, source: str):
        """Quantiles and tail model from impostor distances."""
        impostor = np.sort(np.asarray(impostor, np.float64))
        if impostor.size < MIN_PAIRS / TAIL_FMR:
            raise ValueError(
                f"{impostor.size} impostor pairs are too few to calibrate (need "
                f"{int(MIN_PAIRS / TAIL_FMR)})"
            )
        quantiles = tuple(
            (fmr, threshold_at_fmr(impostor, fmr))
            for fmr in QUANTILES
            if np.floor(fmr * impostor.size) >= MIN_PAIRS
        )
        anchor = float(impostor[int(np.floor(TAIL_FMR * impostor.size))])
        below = impostor[impostor < anchor]
        scale = float(np.mean(anchor - below)) if below.size else 0.0
        return cls(template_id, photos, quantiles, anchor, scale, int(impostor.size), source)

    def tail_threshold(self, fmr: float) -> float:
        """The exponential tail model's threshold at ``fmr`` (< TAIL_FMR)."""
        return self.tail_anchor - self.tail_scale * math.log(TAIL_FMR / fmr)

    def threshold(self, fmr: float) -> float:
        """Distance threshold at ``fmr``: the counted quantiles, the tail model beyond."""
        if not 0 < fmr < 1:
            raise ValueError("a false match rate is between 0 and 1")
        rates = [q[0] for q in self.quantiles]
        if fmr >= rates[0]:
            return self.quantiles[0][1]
        for rate, counted in self.quantiles:
            if math.isclose(fmr, rate, rel_tol=1e-9):
                return counted
        if fmr < rates[-1]:  # beyond what was counted: the model, never looser than counted
            return min(self.tail_threshold(fmr), self.quantiles[-1][1])
        # Between two counted quantiles: interpolate in log(fmr).
        for (high, t_high), (low, t_low) in zip(self.quantiles, self.quantiles[1:], strict=False):
            if low <= fmr <= high:
                w = math.log(high / fmr) / math.log(high / low)
                return t_high + w * (t_low - t_high)
        raise AssertionError("unreachable: fmr within the counted range")

    def one_to_one(self, fmr: float = TARGET_FMR) -> float:
        return self.threshold(fmr)

    def one_to_many(self, gallery_size: int, fpir: float = TARGET_FPIR) -> float:
        return self.threshold(per_comparison_fmr(fpir, gallery_size))

    def to_json(self) -> dict:
        return {
            "template_id": self.template_id,
            "photos": self.photos,
            "quantiles": [list(q) for q in self.quantiles],
            "tail_anchor": self.tail_anchor,
            "tail_scale": self.tail_scale,
            "impostor_pairs": self.impostor_pairs,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict) -> OperatingPoints:
        return cls(
            str(data["template_id"]),
            int(data["photos"]),
            tuple((float(f), float(t)) for f, t in data["quantiles"]),
            float(data["tail_anchor"]),
            float(data["tail_scale"]),
            int(data["impostor_pairs"]),
            str(data["source"]),
        )


class ThresholdTable:
    """Every calibration known for a recognizer; picks the one for a template's K."""

    def __init__(self, points: list[OperatingPoints]) -> None:
        self._by_id: dict[str, dict[int, OperatingPoints]] = {}
        for p in points:
            self._by_id.setdefault(p.template_id, {})[p.photos] = p

    def knows(self, template_id: str) -> bool:
        return template_id in self._by_id

    def for_template(self, template_id: str, photos: int) -> OperatingPoints:
        """The calibration for K = ``photos`` (the largest calibrated K at most ``photos``).

        A template of more photos than calibrated uses the largest calibrated K: more
        photos make genuine distances smaller, and the impostor tail changes little.
        """
        by_k = self._by_id.get(template_id)
        if not by_k:
            raise KeyError(template_id)
        fitting = [k for k in by_k if k <= photos] or [min(by_k)]
        return by_k[max(fitting)]


def load_defaults(path: Path = DEFAULTS_FILE) -> list[OperatingPoints]:
    """The calibrations that ship with the service (faces-dev)."""
    if not path.is_file():
        return []
    return [OperatingPoints.from_json(entry) for entry in json.loads(path.read_text())]


__all__ = [
    "DEFAULTS_FILE",
    "MIN_PAIRS",
    "QUANTILES",
    "TAIL_FMR",
    "TARGET_FMR",
    "TARGET_FPIR",
    "OperatingPoints",
    "ThresholdTable",
    "load_defaults",
    "per_comparison_fmr",
    "threshold_at_fmr",
]

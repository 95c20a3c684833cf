"""Boarding-gate camera scenes made from a folder of face photos (``gatectl scenes make``).

``make_scenes(dataset, out, per_tag=N, seed=S)`` writes, for every tag, N scenes in the
format ``gatectl bench capture`` reads (``testbed.scene_format``)::

    OUT/<tag>_<nn>/video.avi    MJPG, 30 fps, 1280x720
    OUT/<tag>_<nn>/scene.json   {"expect", "identity", "tags", "photo"}
    OUT/<tag>_<nn>/truth.json   how the scene was made, per-frame face boxes (positions)

One static camera at eye height (1.6 m), 800 px focal length. People are cut out of the
photos (``people``), walk in metres (``motion``) through a drawn gate hall
(``backgrounds``), and are filmed with motion blur, auto-exposure, sensor noise and the
camera's MJPEG encoder (``render``, ``optics``). ``tags`` says what each tag changes.
Every draw comes from ``numpy.random.default_rng`` seeded by (seed, tag, index): the same
seed and dataset give the same scenes. Photos stay in memory (zeroized after use) except
as pixels of the videos, which go under ``out`` only, never into this repository.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from testbed.scene_format import MAX_TRACK_EV, TRACK_STEP_EV
from testbed.scene_generator.render import render
from testbed.scene_generator.tags import (
    NO_CAPTURE,
    TAGS,
    Casting,
    UncastableIdentity,
    build_scene,
)

# Who stands behind or beside the traveller: people this far along the cast's order.
OTHER_OFFSETS = (17, 29, 41)


class SceneMakingError(ValueError):
    """The dataset or the output folder cannot be used; the message says why."""


def _inside_a_checkout(out: Path) -> Path | None:
    """The git work tree ``out`` would be in, if it is this project's or any other."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    try:
        top = subprocess.run(
            ["git", "-C", str(probe), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(top.stdout.strip()) if top.returncode == 0 and top.stdout.strip() else None


def _check_cast(people: Sequence[str], tags: Sequence[str], dataset: Path) -> None:
    """Enough people left for ``tags``, or a :class:`SceneMakingError` that says so."""
    if not people:
        raise SceneMakingError(f"no identity in {dataset} has a photo with a face found")
    needs_others = any(t in ("two_close", "queue_behind", "crossing", "poster") for t in tags)
    if needs_others and len(people) < 2:
        raise SceneMakingError(
            f"{dataset} has fewer than two identities with a usable photo; queue_behind,"
            " two_close, crossing and poster need at least two people"
        )


def _others(people: list[str], k: int) -> list[str]:
    """Three other identities for scene ``k``'s traveller (companion, queue, crosser)."""
    traveller = people[k % len(people)]
    others = []
    for offset in OTHER_OFFSETS:
        for step in range(len(people)):
            candidate = people[(k + offset + step) % len(people)]
            if candidate != traveller or len(people) == 1:
                others.append(candidate)
                break
    return others


def _track_stops(stops: float) -> bool:
    """Can an exposure track of ``stops`` be named and read back (``scene_format``)?"""
    steps = stops / TRACK_STEP_EV
    return math.isfinite(stops) and 0 < abs(stops) <= MAX_TRACK_EV and steps == round(steps)


def make_scenes(
    dataset: Path,
    out: Path,
    *,
    per_tag: int = 5,
    seed: int = 0,
    tags: Sequence[str] = TAGS,
    exposure_stops: Sequence[float] = (),
    on_scene: Callable[[str, int, float], object] | None = None,
    on_skipped: Callable[[str, str], object] | None = None,
) -> list[Path]:
    """Write ``per_tag`` scenes of every tag in ``tags`` under ``out``; the scene folders.

    ``exposure_stops`` adds exposure tracks (``render``). ``on_scene(name, frames,
    seconds)`` is called after each scene. An identity with no
    photo the detector finds a face in is left out of the cast, and
    ``on_skipped(identity, why)`` told; one such folder does not stop the run. Raises
    :class:`SceneMakingError` for an unusable dataset, tag or output folder.
    """
    unknown = [t for t in tags if t not in TAGS]
    if unknown:
        raise SceneMakingError(f"unknown tag(s) {', '.join(unknown)}; tags: {', '.join(TAGS)}")
    if per_tag < 1:
        raise SceneMakingError("--per-tag must be at least 1")
    bad = [s for s in exposure_stops if not _track_stops(s)]
    if bad or len(set(exposure_stops)) != len(exposure_stops):
        raise SceneMakingError(
            f"exposure tracks must be distinct, non-zero quarter stops within"
            f" ±{MAX_TRACK_EV:g}, not {', '.join(f'{s:g}' for s in bad or exposure_stops)}"
        )
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise SceneMakingError(f"dataset {dataset} is not a folder of <identity>/*.jpg")
    checkout = _inside_a_checkout(out.resolve())
    if checkout is not None:
        raise SceneMakingError(
            f"{out} is inside the git work tree {checkout}: scene videos show people's"
            " faces and never go into a repository; choose a folder outside it"
        )
    casting = Casting(dataset)
    if not casting.identities:
        raise SceneMakingError(f"no <identity>/*.jpg folders with photos in {dataset}")
    _check_cast(casting.identities, tags, dataset)
    cv2.setNumThreads(1)
    order = np.random.default_rng(seed).permutation(len(casting.identities))
    people = [casting.identities[i] for i in order]
    written = []
    k = 0
    try:
        for tag in tags:
            index = 0
            while index < per_tag:
                identity = people[k % len(people)]
                others = _others(people, k)
                started = time.perf_counter()
                try:
                    scene = build_scene(casting, tag, index, seed, identity, others)
                except UncastableIdentity as exc:
                    people.remove(exc.identity)  # the next in the cast's order takes the part
                    if on_skipped is not None:
                        on_skipped(exc.identity, str(exc))
                    _check_cast(people, tags, dataset)
                    continue
                except ValueError as exc:
                    raise SceneMakingError(f"{tag}_{index:02d}: {exc}") from exc
                k += 1
                index += 1
                folder = out / scene.name
                render(scene, folder, exposure_stops)
                written.append(folder)
                if on_scene is not None:
                    on_scene(scene.name, scene.frames, time.perf_counter() - started)
    finally:
        casting.clear()
    return written


__all__ = [
    "MAX_TRACK_EV",
    "NO_CAPTURE",
    "OTHER_OFFSETS",
    "TAGS",
    "TRACK_STEP_EV",
    "Callable",
    "Casting",
    "Path",
    "SceneMakingError",
    "Sequence",
    "UncastableIdentity",
    "build_scene",
    "make_scenes",
    "render",
]

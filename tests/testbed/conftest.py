"""Fixtures of the testbed's benchmarks and scene generator."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def photos(demo_photos: Path, tmp_path_factory) -> Path:
    """<identity>/*.jpg from the packaged demo photos (links, in a temporary folder)."""
    root = tmp_path_factory.mktemp("photos")
    for identity, names in {"obama": ("obama.jpg", "obama2.jpg", "obama3.jpg"),
                            "biden": ("biden.jpg",)}.items():  # fmt: skip
        (root / identity).mkdir()
        for name in names:
            (root / identity / name).symlink_to(demo_photos / name)
    return root

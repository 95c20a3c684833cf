"""Where the appliance keeps what set-up prepared for it: models, demo assets, test tools."""

from __future__ import annotations

from pathlib import Path

from gate_contract.paths import data_dir


def models_dir() -> Path:
    return data_dir() / "models"


def demo_assets_dir() -> Path:
    """Document and live photos that packages ship, used by the demo and tests."""
    return data_dir() / "demo"


def tools_dir() -> Path:
    """Tools set-up fetched for the tests (axe-core for the browser tests)."""
    return data_dir() / "tools"


__all__ = ["demo_assets_dir", "models_dir", "tools_dir"]

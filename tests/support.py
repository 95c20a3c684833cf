"""What several test modules share besides fixtures: paths and small helpers."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gate_contract.keys import PkiLayout
from matching_service.enrollment import EnrollmentTokens

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "faces-dev"


def copy_layout(source: PkiLayout, target: Path) -> PkiLayout:
    """A copy of a PKI folder, to swap single files in tests."""
    shutil.copytree(source.root, target)
    return PkiLayout(target)


@dataclass
class EnrollmentKit:
    """What a technician's provisioning kit holds: a token store, both service addresses
    and the CA to pin."""

    tokens: EnrollmentTokens
    enroll_target: str
    matcher_target: str
    ca_file: Path

"""Fixtures shared by the matching service's tests."""

from __future__ import annotations

import pytest

from matching_service.recognizers import RECOGNIZERS
from tests.support import require_recognizer


@pytest.fixture(scope="module", params=RECOGNIZERS)
def recognizer(request):
    """Each recognizer in turn (skipped, or failed under CI, when set-up lacks it)."""
    return require_recognizer(request.param)

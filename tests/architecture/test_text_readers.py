"""JSON and TOML are read through guarded calls only: ``json.loads`` and ``tomllib``
raise ``RecursionError`` (not the ``ValueError`` callers handle) on nesting a few
thousand deep, which was a traceback in 15 readers of files others write. A new raw call
fails here until it goes through ``gate_contract.documents``, or catches
``RecursionError`` itself, or is listed below with why its text cannot be hostile."""

from __future__ import annotations

import re

from tests.support import REPO

PACKAGES = ("appliance", "matching_service", "gate_contract", "testbed", "firmware_bridge")
RAW_CALL = re.compile(r"\b(json\.loads?|tomllib\.loads?|tomlkit\.(?:parse|loads))\(")

# Text that set-up, the package or our own child process wrote: not an input anyone else
# can shape.
TRUSTED = {
    "gate_contract/documents.py": "the guard itself",
    "appliance/vision/models.py": "the model manifest set-up wrote",
    "matching_service/thresholds.py": "the calibrations shipped in the package",
    "matching_service/recognizers/model_store.py": "the model manifest and known answers",
    "firmware_bridge/simulator/micropython_glue.py": "our simulator's own pipe",
    "firmware_bridge/simulator/micropython_process.py": "our simulator's own pipe",
    "firmware_bridge/tools/firmware_bench.py": "our simulator's own pipe",
}


def test_every_raw_json_or_toml_read_is_guarded_or_of_trusted_text() -> None:
    unguarded = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            text = path.read_text(encoding="utf-8")
            if not RAW_CALL.search(text) or name in TRUSTED:
                continue
            if "RecursionError" not in text:
                unguarded.append(name)
    assert unguarded == [], f"raw JSON/TOML reads without a RecursionError guard: {unguarded}"


def test_the_trusted_list_names_files_that_exist_and_read_text() -> None:
    for name in TRUSTED:
        assert RAW_CALL.search((REPO / name).read_text(encoding="utf-8")), name

"""The register of who boarded: a claim is durable before the grant, or there is no grant."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from appliance.gate.boarded import BoardedTravellers, Claim
from appliance.gate.outcome import Outcome
from tests.support import REPO

FLIGHT = "BA0283/2026-11-25/LAX"


def reopened(path: Path, records: list[dict] | None = None) -> BoardedTravellers:
    register = BoardedTravellers("")
    register.open(FLIGHT, path, records or [])
    return register


def test_a_claim_survives_a_restart_and_a_release_undoes_it(tmp_path: Path) -> None:
    path = tmp_path / "boarded.jsonl"
    first = reopened(path)
    assert first.claim_token("tok-1") is Claim.CLAIMED
    assert first.claim_token("tok-1") is Claim.ALREADY_BOARDED
    assert first.claim_token("tok-2") is Claim.CLAIMED
    first.release_token("tok-2")  # the gate refused the pulse: not boarded
    first.add_sequence("0021")
    assert path.stat().st_mode & 0o777 == 0o600
    again = reopened(path)
    assert again.claim_token("tok-1") is Claim.ALREADY_BOARDED
    assert again.claim_token("tok-2") is Claim.CLAIMED
    assert again.sequences == {"0021"}
    # another flight's register entries do not count for this one
    other = BoardedTravellers("")
    other.open("BA0284/2026-11-25/LAX", path, [])
    assert other.claim_token("tok-1") is Claim.CLAIMED


def test_the_boarding_log_still_counts(tmp_path: Path) -> None:
    records = [
        {"flight_key": FLIGHT, "outcome": Outcome.GRANTED.value, "traveller_token": "tok-9"},
        {"flight_key": FLIGHT, "outcome": Outcome.REFERRED.value, "traveller_token": "tok-8"},
    ]
    register = reopened(tmp_path / "boarded.jsonl", records)
    assert register.claim_token("tok-9") is Claim.ALREADY_BOARDED
    assert register.claim_token("tok-8") is Claim.CLAIMED


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "boarded.jsonl"
    reopened(path).claim_token("tok-1")
    with path.open("ab") as out:
        out.write(b'{"claim": "tok-2", "flight_')  # power cut mid-append
    register = reopened(path)
    assert register.claim_token("tok-1") is Claim.ALREADY_BOARDED
    assert register.claim_token("tok-2") is Claim.CLAIMED
    # the claim written after the torn line is its own line: it holds after a restart
    # (glued to the fragment, it was unreadable and tok-2 could have boarded twice)
    again = reopened(path)
    assert again.claim_token("tok-2") is Claim.ALREADY_BOARDED
    assert again.claim_token("tok-1") is Claim.ALREADY_BOARDED


def test_a_claim_that_cannot_be_written_is_not_granted(tmp_path: Path) -> None:
    path = tmp_path / "boarded.jsonl"
    register = reopened(path)
    path.mkdir()  # cannot be opened for appending
    assert register.claim_token("tok-1") is Claim.NOT_DURABLE
    path.rmdir()
    assert register.claim_token("tok-1") is Claim.CLAIMED  # not taken by the failed try
    assert json.loads(path.read_text())["claim"] == "tok-1"


def test_an_empty_token_is_never_claimed(tmp_path: Path) -> None:
    assert reopened(tmp_path / "b.jsonl").claim_token("") is Claim.ALREADY_BOARDED


CLAIM_AND_WAIT = r"""
import sys, time
from pathlib import Path
from appliance.gate.boarded import BoardedTravellers
register = BoardedTravellers("")
register.open(sys.argv[1], Path(sys.argv[2]), [])
print(register.claim_token("tok-killed").value, flush=True)
time.sleep(60)
"""


def test_a_claim_survives_sigkill_right_after_it(tmp_path: Path) -> None:
    """The crash the register exists for: killed between the claim and the record."""
    path = tmp_path / "boarded.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_WAIT, FLIGHT, str(path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == Claim.CLAIMED.value
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert reopened(path).claim_token("tok-killed") is Claim.ALREADY_BOARDED

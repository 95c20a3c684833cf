"""gate_contract.files.write_private and testbed.runs: atomic 0600 writes, run folders, polling."""

from __future__ import annotations

import os

import pytest

from gate_contract import files
from gate_contract.files import append_line, write_private
from testbed import runs
from testbed.runs import fresh_run_dir, wait_for


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_private_creates_an_owner_only_file(tmp_path) -> None:
    target = tmp_path / "secret.key"
    write_private(target, b"key material")
    assert target.read_bytes() == b"key material"
    assert target.stat().st_mode & 0o777 == 0o600
    assert _leftovers(tmp_path) == []


def test_write_private_replaces_a_readable_file_with_a_private_one(tmp_path) -> None:
    target = tmp_path / "device.key"
    target.write_bytes(b"old key, far longer than the new one")
    os.chmod(target, 0o644)
    inode = target.stat().st_ino
    write_private(target, b"new key")
    assert target.read_bytes() == b"new key"
    assert target.stat().st_mode & 0o777 == 0o600  # not the old file's 0644
    assert target.stat().st_ino != inode  # replaced by rename, not rewritten in place


def test_write_private_honours_an_explicit_mode(tmp_path) -> None:
    target = tmp_path / "shared.pem"
    write_private(target, b"public", mode=0o640)
    assert target.stat().st_mode & 0o777 == 0o640


def test_write_private_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    target = tmp_path / "ledger.head"
    write_private(target, b"old")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_private(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_fresh_run_dir_keeps_the_newest_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GATE_DATA_DIR", str(tmp_path))
    made = [fresh_run_dir("demo", keep=3) for _ in range(5)]  # one process, quick succession
    assert len(set(made)) == 5 and all(p.parent == tmp_path / "demo-runs" for p in made)
    left = sorted((tmp_path / "demo-runs").iterdir())
    assert left == sorted(made)[-3:] and made[-1] in left
    with pytest.raises(ValueError):
        fresh_run_dir("demo", keep=0)


def test_wait_for_returns_as_soon_as_the_predicate_holds() -> None:
    calls: list[int] = []

    def third_time_lucky() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_for(third_time_lucky, timeout=60.0)
    assert len(calls) == 3  # asked no more once it held: it did not wait out the timeout
    calls.clear()
    assert wait_for(lambda: bool(calls.append(1)), timeout=0.05) is False
    assert len(calls) >= 2  # polled, then asked once more at the deadline
    assert runs.KEEP_RUNS == 5


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"", b"new\n"),
        (b"one\n", b"one\nnew\n"),
        (b"one\ntwo\nhalf a li", b"one\ntwo\nnew\n"),  # an append the power cut short
        (b"no newline at all", b"new\n"),
        (b"one\n" + b"x" * 200_000, b"one\nnew\n"),  # a fragment longer than one read
    ],
)
def test_append_line_starts_a_line_of_its_own(tmp_path, caplog, before, after) -> None:
    """A fragment left at the end is cut before the line goes on: glued to it, the new
    line would be unreadable on every later start."""
    path = tmp_path / "journal.jsonl"
    path.write_bytes(before)
    append_line(path, b"new\n")
    assert path.read_bytes() == after
    cut = len(before) - (len(after) - len(b"new\n"))
    assert ("interrupted append" in caplog.text) == (cut > 0)

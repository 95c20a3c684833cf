"""The purge ledger under real write faults: a full disk, a short write, a killed process.

Defect 1 of the reliability issue: on a full file system lines reached the disk while
the head stayed behind, and a short write left a fragment that broke the chain for good.
Here the faults are real: a 64 KiB tmpfs filled to the last byte (root only; skipped
with a message elsewhere), and a child process under ``RLIMIT_FSIZE``, where the
kernel cuts a write short and then refuses the rest with ``EFBIG``. Defect 2: a capture
sent by a process that is then SIGKILLed is closed on the next start.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.custody.audit import audit_verify
from appliance.custody.ledger import EXIT_REASON, INTENT_EVENT, PurgeLedger, list_segments
from tests.appliance.custody.test_ledger import record

REPO = Path(__file__).resolve().parents[3]


def _state(path: Path) -> tuple[bytes, bytes]:
    return path.read_bytes(), path.with_name(path.name + ".head").read_bytes()


def _verifies(path: Path) -> bool:
    lines: list[str] = []
    return audit_verify(path, out=lines.append) == 0


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs of our own (needs root and mount(2)); unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"full-disk test needs to mount a tmpfs (root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\xff" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_full_disk_leaves_the_ledger_whole_and_it_resumes(small_tmpfs: Path) -> None:
    path = small_tmpfs / "ledger.jsonl"
    ledger = PurgeLedger(path, small_tmpfs / "ledger-signing.key")
    ledger.append(record(0))
    filler = _fill(small_tmpfs)
    before = _state(path)
    for n in range(1, 8):
        with pytest.raises(OSError) as caught:
            ledger.append(record(n))
        assert caught.value.errno == errno.ENOSPC
        assert _state(path) == before  # nothing reached the disk, the head agrees
        assert not ledger.durable and ledger.pending == n
    assert "ENOSPC" in (ledger.failure or "")
    assert _verifies(path)  # during the fault: one record, intact
    assert not ledger.retry()  # still full
    filler.unlink()
    assert ledger.retry() and ledger.durable and ledger.pending == 0
    assert ledger.verify() == 8
    ledger.append(record(8))
    assert _verifies(path) and ledger.verify() == 9
    captures = [json.loads(line)["capture_id"] for line in path.read_bytes().splitlines()]
    assert captures == [f"capture-{n:04d}" for n in range(9)]  # in order, none lost


def test_an_intent_on_a_full_disk_is_refused_and_nothing_is_left(small_tmpfs: Path) -> None:
    path = small_tmpfs / "ledger.jsonl"
    ledger = PurgeLedger(path, small_tmpfs / "ledger-signing.key")
    ledger.append(record(0))
    filler = _fill(small_tmpfs)
    before = _state(path)
    with pytest.raises(OSError):
        ledger.open_intent("capture-0001", "gate-b42-01", "ab" * 32, 1)
    assert _state(path) == before and not ledger.durable
    filler.unlink()
    assert ledger.retry()
    reopened = PurgeLedger(path, small_tmpfs / "ledger-signing.key")
    assert reopened.closed_at_open == []  # the refused capture never left: nothing to close


_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from appliance.custody.ledger import PurgeLedger
    from tests.appliance.custody.test_ledger import record
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    path = Path({path!r})
    ledger = PurgeLedger(path, Path({key!r}))
    ledger.append(record(0))
    size = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))  # the next line: 100 bytes
    errors = []
    for n in (1, 2):
        try:
            ledger.append(record(n))
        except OSError as exc:
            errors.append(exc.errno)
    after_fault = path.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    resumed = ledger.retry()
    print(json.dumps({{"size": size, "after_fault": after_fault, "errors": errors,
                      "resumed": resumed, "count": ledger.verify()}}))
    """
)


def test_a_short_write_is_cut_off_and_the_record_written_whole_later(tmp_path: Path) -> None:
    path, key = tmp_path / "ledger.jsonl", tmp_path / "ledger-signing.key"
    code = _CHILD.format(repo=str(REPO), path=str(path), key=str(key))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == [errno.EFBIG, errno.EFBIG]
    assert result["after_fault"] == result["size"]  # the 100-byte fragment was cut off
    assert result["resumed"] and result["count"] == 3
    assert _verifies(path)


def test_a_failed_head_update_takes_the_line_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.custody import ledger as ledger_module

    path = tmp_path / "ledger.jsonl"
    ledger = PurgeLedger(path, tmp_path / "ledger-signing.key")
    ledger.append(record(0))
    before = _state(path)
    real = ledger_module.write_private

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger_module, "write_private", full)
    with pytest.raises(OSError):
        ledger.append(record(1))
    assert _state(path) == before  # the line was taken back: file and head agree
    monkeypatch.setattr(ledger_module, "write_private", real)
    assert ledger.retry() and ledger.verify() == 2


def test_a_fragment_left_by_a_failed_cut_is_removed_before_the_next_append(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = PurgeLedger(path)
    ledger.append(record(0))
    with open(path, "ab") as handle:
        handle.write(b'{"prev":"abc')  # as if a short write could not be cut off
    ledger.append(record(1))
    assert ledger.verify() == 2


# --- intents: every capture that left the unit is in the ledger -------------------------


def test_a_closed_intent_is_not_closed_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = PurgeLedger(path)
    ledger.open_intent("capture-0000", "gate-b42-01", "ab" * 32, 1)
    ledger.append(record(0))
    assert PurgeLedger(path).closed_at_open == []
    assert PurgeLedger(path).verify() == 2


def test_an_intent_left_open_is_closed_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    first = PurgeLedger(path, tmp_path / "ledger-signing.key")
    first.open_intent("capture-0007", "gate-b42-01", "cd" * 32, 1_795_000_000_000)
    first.open_intent("capture-0008", "gate-b42-01", "ef" * 32, 1_795_000_000_500)
    first.append(record(8))  # capture-0008's record came; capture-0007's never did
    second = PurgeLedger(path, tmp_path / "ledger-signing.key")
    assert [r.capture_id for r in second.closed_at_open] == ["capture-0007"]
    closing = second.closed_at_open[0]
    assert closing.reason == EXIT_REASON and closing.sealed_sha256 == "cd" * 32
    assert second.verify() == 4 and _verifies(path)
    assert PurgeLedger(path, tmp_path / "ledger-signing.key").closed_at_open == []


def test_intents_are_followed_across_segments(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = PurgeLedger(path, max_segment_bytes=600)
    ledger.open_intent("capture-0001", "gate-b42-01", "ab" * 32, 1)
    for n in range(2, 5):
        ledger.append(record(n))
    assert len(list_segments(path)) > 1
    assert [r.capture_id for r in PurgeLedger(path).closed_at_open] == ["capture-0001"]


def test_a_capture_sent_by_a_process_killed_with_sigkill_is_closed(tmp_path: Path) -> None:
    path, key = tmp_path / "ledger.jsonl", tmp_path / "ledger-signing.key"
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from appliance.custody.ledger import PurgeLedger
        ledger = PurgeLedger(Path({str(path)!r}), Path({str(key)!r}))
        ledger.open_intent("capture-killed", "gate-b42-01", "ab" * 32, 1_795_000_000_000)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [e.get("event") for e in entries] == [INTENT_EVENT]
    reopened = PurgeLedger(path, key)
    assert [r.capture_id for r in reopened.closed_at_open] == ["capture-killed"]
    assert _verifies(path) and reopened.verify() == 2

"""Scanner dispatcher and readers. The serial reader runs over a real pseudo-terminal:
scans are written on the master side, pyserial opens the slave path."""

from __future__ import annotations

import datetime
import io
import os
import queue
import time
from collections.abc import Iterator

import pytest

from appliance.gate.agents import AgentAction, AgentCommand
from appliance.gate.scanner import (
    MAX_SCAN_CHARS,
    ScanParser,
    ScanRefused,
    ScanResult,
    SerialScanner,
    StreamScanner,
)
from gate_contract.bcbp import BoardingPass
from testbed.testing import TestAgent

PASS = "M1DESMARAIS/LUC       EABC123 YULFRAAC 0834 326J001A0025 100"
PASS2 = "M1TEST/PETER          E24Z5RN AMSBRUKL 1733 019M008A0001 316>503  W0D0742497067621"
REF = datetime.date(2016, 6, 1)


AGENTS = {name: TestAgent(name) for name in ("4711", "a-b_9", "7", "1", "2", "9", "12", "5")}
REGISTRY = next(iter(AGENTS.values())).registry(*list(AGENTS.values())[1:])


REF_AGENTS = {"reference_date": REF, "agents": REGISTRY}


def act(agent: str, command: str, prefix: str = "AGT:") -> str:
    """A signed action of a registered test agent, as the handheld shows it."""
    return AGENTS[agent].action(command, prefix=prefix)


@pytest.fixture
def parser() -> ScanParser:
    return ScanParser(reference_date=REF, agents=REGISTRY)


# -------------------------------------------------------------------- dispatcher


def test_boarding_pass(parser: ScanParser) -> None:
    result = parser.parse(PASS)
    assert isinstance(result, BoardingPass)
    assert result.legs[0].flight_date == datetime.date(2016, 11, 21)


@pytest.mark.parametrize(
    "scan", [PASS + "\r", PASS + "\r\n", PASS.encode(), "]Q3" + PASS, b"]L2" + PASS.encode()]
)
def test_boarding_pass_forms(parser: ScanParser, scan: str | bytes) -> None:
    result = parser.parse(scan)
    assert isinstance(result, BoardingPass) and result.surname == "DESMARAIS"


def test_reference_date_may_be_a_callable() -> None:
    result = ScanParser(reference_date=lambda: datetime.date(2030, 1, 1)).parse(PASS)
    assert isinstance(result, BoardingPass)
    assert result.legs[0].flight_date == datetime.date(2029, 11, 22)


@pytest.mark.parametrize(
    ("agent", "command", "suffix"),
    [("4711", "RELEASE", ""), ("4711", "CANCEL", "\r"), ("a-b_9", "OPTOUT", "\r\n")],
)
def test_signed_agent_actions(parser: ScanParser, agent: str, command: str, suffix: str):
    expected = AgentAction(agent, AgentCommand(command))
    assert parser.parse(act(agent, command) + suffix) == expected
    assert parser.parse(act(agent, command).encode()) == expected  # bytes, as serial gives


@pytest.mark.parametrize(
    "scan",
    [
        "AGT:",
        "AGT:4711",  # the plain badge of old: text anyone can print
        "AGT:4711:RELEASE",
        "AGT:NOBODY:RELEASE",
        "AGT:4711 cancel",
        "AGT:b@d",
    ],
)
def test_unsigned_agent_badges_are_refused(parser: ScanParser, scan: str) -> None:
    result = parser.parse(scan)
    assert isinstance(result, ScanRefused) and result.field == "agent"


def test_custom_agent_prefix() -> None:
    p = ScanParser(agent_prefix="#BADGE#", reference_date=REF, agents=REGISTRY)
    assert p.parse(act("7", "RELEASE", prefix="#BADGE#")) == AgentAction("7", AgentCommand.RELEASE)
    assert isinstance(p.parse(act("7", "CANCEL")), ScanRefused)  # "AGT:" is not a badge here
    with pytest.raises(ValueError):
        ScanParser(agent_prefix="MAGENT")  # would shadow every boarding pass
    with pytest.raises(ValueError):
        ScanParser(agent_prefix="")


def test_invalid_pass_is_a_scan_error_without_the_scanned_text(parser: ScanParser) -> None:
    bad = PASS[:44] + "367" + PASS[47:]
    result = parser.parse(bad)
    assert isinstance(result, ScanRefused)
    assert (result.field, result.position, result.length) == ("legs[0].julian_day", 44, 60)
    assert "DESMARAIS" not in repr(result) and "ABC123" not in repr(result)


@pytest.mark.parametrize(
    ("scan", "words"),
    [
        ("", "empty"),
        ("\r\n", "empty"),
        ("   ", "empty"),
        (b"M1\xff\xfe", "not ASCII"),
        ("M" * (MAX_SCAN_CHARS + 1), "longer"),
        ("hello", "not a valid boarding pass"),
        ("M1DESMARAIS/LUC       EABC123 YULFRAAC 0834 326J001A0025 1ÿ0", "boarding pass"),
    ],
)
def test_bad_scans_never_raise(parser: ScanParser, scan: str | bytes, words: str) -> None:
    result = parser.parse(scan)
    assert isinstance(result, ScanRefused) and words in result.reason


# ----------------------------------------------------------------- serial on a pty


class Pty:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


@pytest.fixture
def results() -> queue.Queue[ScanResult]:
    return queue.Queue()


def get(q: queue.Queue[ScanResult]) -> ScanResult:
    return q.get(timeout=5)


def test_serial_two_scans_in_one_write(pty: Pty, results: queue.Queue[ScanResult]) -> None:
    with SerialScanner(pty.path, on_scan=results.put, parser=ScanParser(**REF_AGENTS)) as scanner:
        assert scanner.running
        pty.write(PASS.encode() + b"\r" + act("4711", "RELEASE").encode() + b"\r")
        first, second = get(results), get(results)
    assert isinstance(first, BoardingPass) and first.legs[0].flight_number == "834"
    assert second == AgentAction("4711", AgentCommand.RELEASE)
    assert not scanner.running and scanner.error is None
    assert results.empty()


def test_serial_scan_split_across_writes(pty: Pty, results: queue.Queue[ScanResult]) -> None:
    with SerialScanner(pty.path, on_scan=results.put, parser=ScanParser(reference_date=REF)):
        data = PASS2.encode()
        pty.write(data[:30])
        time.sleep(0.2)
        pty.write(data[30:70])
        time.sleep(0.2)
        pty.write(data[70:] + b"\r")
        result = get(results)  # a part delivered before the terminator would come first
    assert isinstance(result, BoardingPass)
    assert result.legs[0].carrier == "KL" and result.legs[0].document_serial == "2497067621"


def test_serial_crlf_and_bad_scans(pty: Pty, results: queue.Queue[ScanResult]) -> None:
    with SerialScanner(pty.path, on_scan=results.put, parser=ScanParser(reference_date=REF)):
        # '\r' terminates; the '\n' that follows is an empty scan and is skipped
        pty.write(b"garbage\r\n\r\n" + PASS.encode() + b"\r\n" + b"sentinel\r")
        bad, good, sentinel = get(results), get(results), get(results)
    assert isinstance(bad, ScanRefused) and bad.field == "format_code"
    assert isinstance(good, BoardingPass)
    # the empty scans between them delivered nothing: the next result is the sentinel
    assert isinstance(sentinel, ScanRefused) and sentinel.length == len("sentinel")


def test_serial_custom_terminator_and_failing_callback(pty: Pty) -> None:
    seen: queue.Queue[ScanResult] = queue.Queue()

    def on_scan(result: ScanResult) -> None:
        seen.put(result)
        raise RuntimeError("callback bug")  # must not stop the reader

    with SerialScanner(
        pty.path,
        baudrate=115200,
        terminator=b"\n",
        on_scan=on_scan,
        parser=ScanParser(**REF_AGENTS),
    ) as scanner:
        pty.write(f"{act('1', 'OPTOUT')}\n{act('2', 'CANCEL')}\n".encode())
        assert get(seen) == AgentAction("1", AgentCommand.OPTOUT)
        assert get(seen) == AgentAction("2", AgentCommand.CANCEL)
        assert scanner.running


def test_serial_overlong_scan_is_dropped(pty: Pty, results: queue.Queue[ScanResult]) -> None:
    with SerialScanner(pty.path, on_scan=results.put, parser=ScanParser(**REF_AGENTS)):
        for _ in range(3):
            pty.write(b"X" * 683)  # 2049 bytes without a terminator
        result = get(results)
        pty.write(act("9", "RELEASE").encode() + b"\r")
        follow = get(results)
    assert isinstance(result, ScanRefused) and "terminator" in result.reason
    assert result.length == MAX_SCAN_CHARS + 1
    # the dropped bytes do not prefix the next scan
    assert follow == AgentAction("9", AgentCommand.RELEASE)
    assert results.empty()


def test_serial_bad_arguments(pty: Pty) -> None:
    with pytest.raises(ValueError):
        SerialScanner(pty.path, terminator=b"", on_scan=print)
    scanner = SerialScanner(pty.path, on_scan=print).start()
    with pytest.raises(RuntimeError):
        scanner.start()
    scanner.stop()


# ----------------------------------------------------------------- stream / stdin


def test_stream_scanner_text() -> None:
    stream = io.StringIO(f"{PASS}\n\n{act('12', 'OPTOUT')}\r\nnot a pass\n{PASS2}")
    results = list(StreamScanner(stream, parser=ScanParser(**REF_AGENTS)))
    assert len(results) == 4
    assert isinstance(results[0], BoardingPass)
    assert results[1] == AgentAction("12", AgentCommand.OPTOUT)
    assert isinstance(results[2], ScanRefused)
    assert isinstance(results[3], BoardingPass) and results[3].legs[0].from_airport == "AMS"


def test_stream_scanner_bytes_and_run() -> None:
    stream = io.BytesIO(PASS.encode() + b"\r\n\xff\xfe\n" + act("5", "CANCEL").encode() + b"\n")
    seen: list[ScanResult] = []
    count = StreamScanner(stream, parser=ScanParser(**REF_AGENTS)).run(seen.append)
    assert count == 3
    assert isinstance(seen[0], BoardingPass)
    assert isinstance(seen[1], ScanRefused) and "ASCII" in seen[1].reason
    assert seen[2] == AgentAction("5", AgentCommand.CANCEL)

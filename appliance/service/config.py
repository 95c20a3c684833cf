"""The gate unit's configuration: one TOML file, checked completely before anything starts.

Every section and key is known; a typo, a wrong type or an out-of-range value raises
:class:`ConfigError` naming the key, so a misconfigured gate refuses to start instead of
running with a silently ignored setting. Relative paths are taken from the folder of the
configuration file; optional paths default to folders under the unit's state directory,
``[service] data_dir`` (default: ``gate_contract.paths.data_dir()``, i.e. ``$GATE_DATA_DIR``),
so every command given the file (``gatectl run``, ``selftest``, ``status``, ``audit``) finds
the same keys, models and ledger whoever runs it. A misspelt key is named with the key it
most likely means. For development, ``GATE_CFG__<SECTION>__<KEY>`` environment variables
replace single keys before the checks (see :func:`apply_env_overrides`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import math
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.custody.audit import default_key_path
from appliance.errors import ConfigError
from appliance.gate.agents import ACTION_TTL_S
from appliance.gate.flight import Flight
from appliance.gate.scanner import DEFAULT_AGENT_PREFIX
from appliance.gate.workflow import Mode
from appliance.paths import models_dir
from appliance.screens.settings import ScreenSettings, is_loopback
from appliance.vision.camera import CameraSpec
from appliance.vision.exposure import MAX_EV
from appliance.vision.models import DEFAULT_RUNTIME, MODELS, Runtime
from appliance.vision.quality import QualityThresholds
from appliance.vision.selection import MAX_ATTEMPTS
from gate_contract.documents import NestedTooDeeply, parse_toml
from gate_contract.keys import PkiLayout
from gate_contract.paths import data_dir

MIN_RELAY_KEY_BYTES = 16  # firmware_bridge.protocol.MIN_KEY_LEN
PULSE_MS_RANGE = (100, 5000)
FRAME_WIDTH_RANGE = (160, 7680)
FRAME_HEIGHT_RANGE = (120, 4320)
DEADLINE_S_RANGE = (0.1, 120.0)
REPEAT_RANGE = (1, 10_000)
STALL_S_RANGE = (1.0, 600.0)
SCANNER_STDIN = "stdin"  # [scanner] port: a keyboard-wedge scanner typing into stdin
SCANNER_TERMINATORS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}
SCANNER_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
DEFAULT_STALL_S = 10.0  # watchdog fed only while a frame came this recently
DEFAULT_SESSION_REFRESH_S = 60.0
SESSION_REFRESH_S_RANGE = (5.0, 3600.0)
MAX_AGENT_PREFIX_CHARS = 16
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # also the certificate's name
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
_ORIGIN = re.compile(r"^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class MatcherConfig:
    target: str
    pki_dir: Path
    deadline_s: float = 3.0
    # The enrollment service (host:port, server TLS) `gatectl provision --rotate` uses.
    enroll_target: str = ""


@dataclass(frozen=True)
class SerialConfig:
    port: str
    relay_key_file: Path
    relay_key: bytes = field(repr=False, default=b"")
    pulse_ms: int = 3000


@dataclass(frozen=True)
class VisionConfig:
    """Which detector runs on what part of the frame, and when a frame is sent
    (``appliance.vision.detectors``, ``appliance.vision.selection``)."""

    runtime: str = DEFAULT_RUNTIME
    model: str = "full"
    zone_width: float | None = 1.0  # in frame heights; None = the whole frame
    min_score: float = 0.65
    capture_window_frames: int = 45
    tracking: bool = True  # follow the face with the short-range model on a region
    exposure_correction: bool = True  # a tone curve for under-exposed faces
    steady_frames: int = 2  # consecutive passing frames before one is sent
    # captures sent for one traveller before a referral: a capture the matcher does not
    # verify is taken once more as the traveller comes nearer (``FrameSelector.retake``)
    capture_attempts: int = 2
    # stops of exposure compensation a camera with exposure control (the Pi camera) may
    # be asked for while the traveller's face is dark (``appliance.vision.exposure``); 0: off
    face_exposure_ev: float = 1.0
    models_dir: Path | None = None  # None: ``appliance.paths.models_dir()``


@dataclass(frozen=True)
class ServiceConfig:
    """How the service reports on itself (``gatectl status``, the systemd watchdog)."""

    # Small JSON file the service rewrites atomically (never images); default: in the state
    # directory, beside the purge ledger.
    status_path: Path
    # The watchdog is fed only while the capture pipeline delivered a frame this recently.
    stall_s: float = DEFAULT_STALL_S
    # How often the service reopens its flight session (gallery changes, a restarted
    # matcher); seconds.
    session_refresh_s: float = DEFAULT_SESSION_REFRESH_S


@dataclass(frozen=True)
class ScannerConfig:
    """The barcode scanner at the gate (boarding passes, agent badges).

    ``port`` is a serial device (USB-CDC or RS-232, read with ``baudrate`` and scans split
    on ``terminator``) or ``"stdin"`` for a keyboard-wedge scanner, one scan per line.
    """

    port: str
    baudrate: int = 9600
    terminator: str = "CR"
    agent_prefix: str = DEFAULT_AGENT_PREFIX

    @property
    def stdin(self) -> bool:
        return self.port == SCANNER_STDIN

    @property
    def terminator_bytes(self) -> bytes:
        return SCANNER_TERMINATORS[self.terminator]


@dataclass(frozen=True)
class AgentsConfig:
    """Who may act as an agent at this gate (see ``appliance.gate.agents``)."""

    file: Path  # the agent registry (0600); absent: nobody may act
    action_ttl_s: float = ACTION_TTL_S


@dataclass(frozen=True)
class GateConfig:
    device_id: str
    camera: CameraSpec
    matcher: MatcherConfig
    serial: SerialConfig
    flight: Flight
    quality: QualityThresholds
    ledger_path: Path
    vision: VisionConfig = field(default_factory=VisionConfig)
    capture_mode: str = Mode.BIOMETRIC_FIRST
    service: ServiceConfig | None = None
    scanner: ScannerConfig | None = None
    agents: AgentsConfig | None = None  # None: the registry beside the purge ledger
    boarding_log_file: Path | None = None  # None: beside the purge ledger
    screens: ScreenSettings | None = None  # None: no web pages, no /metrics
    source_path: Path | None = None
    data_dir: Path = field(default_factory=data_dir)  # the unit's state directory

    @property
    def models_dir(self) -> Path:
        """Where set-up put the detection models: ``[vision] models_dir`` (``gatectl
        provision`` writes it, so a service user with another home finds them), else
        ``appliance.paths.models_dir()``."""
        return self.vision.models_dir or models_dir()

    @property
    def lock_path(self) -> Path:
        """The service's instance lock (``appliance.service.instance``), beside the status
        file it protects."""
        return self.status_path.parent / "gate-service.lock"

    @property
    def boarding_log_path(self) -> Path:
        if self.boarding_log_file is not None:
            return self.boarding_log_file
        return self.ledger_path.parent / "boarding-log.jsonl"

    @property
    def status_path(self) -> Path:
        if self.service:
            return self.service.status_path
        return self.ledger_path.parent / "status.json"

    @property
    def agents_path(self) -> Path:
        if self.agents is not None:
            return self.agents.file
        return self.ledger_path.parent / "agents.json"

    @property
    def stall_s(self) -> float:
        return self.service.stall_s if self.service else DEFAULT_STALL_S

    @property
    def session_refresh_s(self) -> float:
        return self.service.session_refresh_s if self.service else DEFAULT_SESSION_REFRESH_S


# ----------------------------------------------------------------------------- helpers


class _Section:
    """One table of the file; remembers which keys were read to reject unknown ones."""

    def __init__(self, name: str, table: dict[str, Any]) -> None:
        self.name = name
        self.table = table
        self.known: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def _get(self, key: str, required: bool) -> Any:
        self.known.add(key)
        if key not in self.table:
            if required:
                raise ConfigError(f"missing key {self.key(key)}")
            return None
        return self.table[key]

    def string(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default is None)
        if value is None:
            return default or ""
        if not isinstance(value, str):
            raise ConfigError(f"{self.key(key)} must be a string, not {_type(value)}")
        if default is None and not value.strip():
            raise ConfigError(f"{self.key(key)} must not be empty")
        _refuse_control_characters(self.key(key), value)
        return value

    def strings(self, key: str) -> list[str] | None:
        """An optional list of non-empty strings (None when absent)."""
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self.key(key)} must be a list of non-empty strings")
        for item in value:
            _refuse_control_characters(self.key(key), item)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(key)} must be true or false, not {_type(value)}")
        return value

    def integer(self, key: str, default: int, bounds: tuple[int, int]) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.key(key)} must be an integer, not {_type(value)}")
        _check_range(self.key(key), value, bounds)
        return value

    def number(self, key: str, default: float, bounds: tuple[float, float]) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        return _number(self.key(key), value, bounds)

    def path(self, key: str, base: Path, default: Path | None = None) -> Path:
        value = self.string(key, None if default is None else "")
        if not value:
            assert default is not None
            return default
        return _resolve(value, base)

    def optional_path(self, key: str, base: Path) -> Path | None:
        """A path without a default: None when the key is absent; when given, like
        :meth:`path` (not empty, relative to ``base``)."""
        if self._get(key, False) is None:
            return None
        return self.path(key, base)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.known)
        if unknown:
            names = ", ".join(
                f"{k!r} in [{self.name}]{_did_you_mean(k, self.known)}" for k in unknown
            )
            raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {names}")


def control_character(value: str) -> str | None:
    """The first control or invisible formatting character in ``value`` (NUL, a newline,
    a tab, DEL, a bidirectional override...), as ``U+000A``; None when there is none.

    No configured value has a use for one, and each is a way to make a value that looks
    right and is not (a port that is not the one shown, a device id that does not match
    its certificate) or that breaks the file it is written into."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return f"U+{ord(char):04X}"
    return None


def _refuse_control_characters(name: str, value: str) -> None:
    bad = control_character(value)
    if bad:
        raise ConfigError(f"{name} contains a control character ({bad}); type it again")


def _did_you_mean(name: str, known: set[str] | tuple[str, ...], brackets: bool = False) -> str:
    """`` (did you mean 'source'?)`` for a misspelt name, or nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean [{close[0]}]?)" if brackets else f" (did you mean {close[0]!r}?)"


def _type(value: Any) -> str:
    return {dict: "a table", list: "an array"}.get(type(value), type(value).__name__)


def _number(name: str, value: Any, bounds: tuple[float, float]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, not {_type(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number")
    _check_range(name, value, bounds)
    return value


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(f"{name} = {value} is out of range ({low}..{high})")


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _section(document: dict[str, Any], name: str, required: bool = True) -> _Section:
    if name not in document:
        if required:
            raise ConfigError(f"missing section [{name}]")
        return _Section(name, {})
    table = document[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{name} must be a table ([{name}]), not {_type(table)}")
    return _Section(name, table)


def parse_camera_source(text: str, base: Path, key: str = "camera.source") -> tuple[str, Any]:
    """``replay:<path>`` (relative to ``base``), ``opencv:<index|path|url>`` or ``picamera2``."""
    from appliance.errors import CameraError
    from appliance.vision.camera import parse_camera_spec

    try:
        kind, target = parse_camera_spec(text)
    except CameraError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    if kind == "replay":
        return kind, _resolve(str(target), base)
    return kind, target


def read_relay_key(path: Path, key: str = "serial.relay_key_file") -> bytes:
    """The relay HMAC key: one hex string (whitespace ignored), at least 16 bytes."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{key}: {path} is not a hex key file") from exc
    try:
        secret = bytes.fromhex("".join(text.split()))
    except ValueError as exc:
        raise ConfigError(f"{key}: {path} does not hold a hex key") from exc
    if len(secret) < MIN_RELAY_KEY_BYTES:
        raise ConfigError(
            f"{key}: key in {path} is {len(secret)} bytes; at least {MIN_RELAY_KEY_BYTES} needed"
        )
    return secret


# ------------------------------------------------------------------------------ loader

SECTIONS = (
    "device",
    "camera",
    "matcher",
    "serial",
    "flight",
    "quality",
    "ledger",
    "vision",
    "capture",
    "scanner",
    "agents",
    "boarding_log",
    "service",
    "screens",
)


def _scanner(document: dict[str, Any], serial_port: str) -> ScannerConfig | None:
    """The optional ``[scanner]`` section (None when absent)."""
    if "scanner" not in document:
        return None
    scanner = _section(document, "scanner")
    port = scanner.string("port")
    if "\x00" in port or port != port.strip():
        raise ConfigError(
            f"scanner.port = {port!r} must be a device path or {SCANNER_STDIN!r}"
            " (no NUL characters or surrounding spaces)"
        )
    if port == serial_port:
        raise ConfigError(f"scanner.port = {port!r} is the gate MCU's port (serial.port)")
    on_stdin = port == SCANNER_STDIN
    for name in ("baudrate", "terminator"):
        if on_stdin and name in scanner.table:
            raise ConfigError(
                f"scanner.{name} does not apply to port = {SCANNER_STDIN!r}"
                " (a keyboard wedge: one scan per line)"
            )
    baudrate = scanner.integer("baudrate", 9600, (SCANNER_BAUDRATES[0], SCANNER_BAUDRATES[-1]))
    if baudrate not in SCANNER_BAUDRATES:
        raise ConfigError(f"scanner.baudrate = {baudrate} must be one of {list(SCANNER_BAUDRATES)}")
    terminator = scanner.string("terminator", "CR")
    if terminator.upper() not in SCANNER_TERMINATORS:
        raise ConfigError(
            f"scanner.terminator = {terminator!r} must be one of {list(SCANNER_TERMINATORS)}"
        )
    prefix = scanner.string("agent_prefix", DEFAULT_AGENT_PREFIX)
    if (
        not prefix
        or len(prefix) > MAX_AGENT_PREFIX_CHARS
        or not prefix.isascii()
        or not prefix.isprintable()
        or any(c.isspace() for c in prefix)
        or prefix.startswith("M")  # would shadow boarding passes (BCBP starts with 'M')
        or prefix.startswith("]")  # an AIM symbology identifier
    ):
        raise ConfigError(
            f"scanner.agent_prefix = {prefix!r} must be 1..{MAX_AGENT_PREFIX_CHARS} printable"
            " ASCII characters without spaces, not starting with 'M' (boarding passes)"
            " or ']'"
        )
    if "agent_ids" in scanner.table:
        raise ConfigError(
            "scanner.agent_ids is gone: an agent id is text anyone can print. Register each"
            " agent's key with `gatectl agents add` ([agents] file) and use signed actions"
        )
    scanner.finish()
    return ScannerConfig(port, baudrate, terminator.upper(), prefix)


def _origins(section: _Section, key: str) -> tuple[str, ...]:
    """``scheme://host[:port]`` each; plain http only for loopback hosts."""
    values = section.strings(key) or []
    for value in values:
        match = _ORIGIN.fullmatch(value)
        if match is None:
            raise ConfigError(
                f"{section.key(key)}: {value!r} must be scheme://host[:port] (no path)"
            )
        host = match.group(2).strip("[]")
        if match.group(1) == "http" and not is_loopback(host):
            raise ConfigError(f"{section.key(key)}: {value!r} must use https beyond loopback")
    return tuple(values)


def _screens(document: dict[str, Any], base: Path) -> ScreenSettings | None:
    """The optional ``[screens]`` section: the traveller display, agent station, metrics."""
    if "screens" not in document:
        return None
    screens = _section(document, "screens")
    bind = screens.string("bind", "127.0.0.1")
    if not is_loopback(bind):
        try:
            ipaddress.ip_address(bind)
        except ValueError as exc:
            raise ConfigError(
                f"screens.bind = {bind!r} must be an IP address (e.g. 127.0.0.1, 0.0.0.0)"
            ) from exc
    port = screens.integer("port", 8080, (0, 65535))
    certificate = screens.optional_path("certificate", base)
    key = screens.optional_path("key", base)
    if (certificate is None) != (key is None):
        raise ConfigError("screens.certificate and screens.key go together: set both or neither")
    if certificate is None and not is_loopback(bind):
        raise ConfigError(
            f"screens.bind = {bind!r} is beyond loopback: the screens are then served over"
            " HTTPS only; set screens.certificate and screens.key (the unit's certificate)"
        )
    names = screens.strings("server_names") or []
    for name in names:
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError(f"screens.server_names: {name!r} is not a host name")
    settings = ScreenSettings(
        bind=bind,
        port=port,
        certificate=certificate,
        key=key,
        server_names=tuple(names),
        peers=_origins(screens, "peers"),
        overview_origins=_origins(screens, "overview_origins"),
        metrics=screens.boolean("metrics", True),
        retention_us_hours=screens.integer("retention_us_hours", 12, (1, 24 * 30)),
        retention_other_days=screens.integer("retention_other_days", 14, (1, 365)),
        max_streams=screens.integer("max_streams", 32, (1, 256)),
    )
    screens.finish()
    return settings


def check_service_config(config: GateConfig) -> None:
    """What the service needs beyond a well-formed file; raises :class:`ConfigError`.

    Pass-then-face starts each traveller with a scanned boarding pass, so it needs a
    ``[scanner]``. (Checked here rather than in :func:`load_config`, which also reads
    files that ``gatectl provision`` writes before a scanner is configured.)
    """
    if config.capture_mode == Mode.PASS_THEN_FACE and config.scanner is None:
        raise ConfigError(
            "pass_then_face needs [scanner]: capture.mode = 'pass_then_face' starts each"
            " traveller with a scanned boarding pass; set [scanner] port to the scanner's"
            f" serial device or {SCANNER_STDIN!r}"
        )


def check_key_files(config: GateConfig) -> None:
    """The service starts only with private keys nobody else can read (``gatectl
    selftest`` reports the same rule as its "key permissions" check)."""
    loose = [f"{path} ({mode:04o})" for path, mode in key_file_modes(config) if mode & 0o077]
    if loose:
        raise ConfigError(
            f"private key files readable by others: {', '.join(loose)}; chmod 600 them"
        )


def key_file_modes(config: GateConfig) -> list[tuple[Path, int]]:
    """The unit's private key files that exist, with their permission bits: the device's
    TLS key, the relay key, the ledger's signing key and the screens' HTTPS key."""
    paths = [
        PkiLayout(config.matcher.pki_dir).device_key,
        config.serial.relay_key_file,
        default_key_path(config.ledger_path),
    ]
    if config.screens is not None and config.screens.key is not None:
        paths.append(config.screens.key)
    found = []
    for path in paths:
        try:
            found.append((path, path.stat().st_mode & 0o777))
        except OSError:
            continue  # a missing key is reported where it is used
    return found


def parse_config(document: dict[str, Any], base: Path) -> GateConfig:
    """Check a parsed TOML document; ``base`` is the folder relative paths start from."""
    unknown = sorted(set(document) - set(SECTIONS))
    if unknown:
        names = ", ".join(f"[{n}]{_did_you_mean(n, SECTIONS, brackets=True)}" for n in unknown)
        raise ConfigError(f"unknown section{'s' if len(unknown) > 1 else ''} {names}")

    # The state directory first: every other default path is in it.
    service = _section(document, "service", required=False)
    state = service.path("data_dir", base, data_dir())

    device = _section(document, "device")
    device_id = device.string("id")
    if not DEVICE_ID.fullmatch(device_id):
        raise ConfigError(
            f"device.id = {device_id!r} must be 1..64 letters, digits, '.', '_' or '-'"
            " (the name on the device certificate)"
        )
    device.finish()

    camera = _section(document, "camera")
    kind, target = parse_camera_source(camera.string("source"), base)
    camera_spec = CameraSpec(
        kind,
        target,
        camera.integer("width", 1280, FRAME_WIDTH_RANGE),
        camera.integer("height", 720, FRAME_HEIGHT_RANGE),
        camera.integer("repeat", 1, REPEAT_RANGE),
    )
    camera.finish()

    matcher = _section(document, "matcher")
    target_text = matcher.string("target")
    if not _is_host_port(target_text):
        raise ConfigError(f"matcher.target = {target_text!r} must be host:port (port 1..65535)")
    enroll_target = matcher.string("enroll_target", "")
    if enroll_target and not _is_host_port(enroll_target):
        raise ConfigError(
            f"matcher.enroll_target = {enroll_target!r} must be host:port (port 1..65535)"
        )
    matcher_config = MatcherConfig(
        target_text,
        matcher.path("pki_dir", base, state / "pki"),
        matcher.number("deadline_s", 3.0, DEADLINE_S_RANGE),
        enroll_target,
    )
    matcher.finish()

    serial = _section(document, "serial")
    port_name = serial.string("port")
    key_file = serial.path("relay_key_file", base)
    pulse_ms = serial.integer("pulse_ms", 3000, PULSE_MS_RANGE)
    serial.finish()
    serial_config = SerialConfig(port_name, key_file, read_relay_key(key_file), pulse_ms)

    flight = _section(document, "flight")
    date = flight.string("date")
    try:
        dt.date.fromisoformat(date)
    except ValueError as exc:
        raise ConfigError(f"flight.date = {date!r} is not an ISO date (YYYY-MM-DD)") from exc
    flight_config = Flight(
        flight.string("carrier"),
        flight.string("number"),
        date,
        flight.string("airport"),
        flight.string("gate", ""),
    )
    flight.finish()

    quality = _section(document, "quality", required=False)
    overrides = {}
    for threshold in dataclasses.fields(QualityThresholds):
        value = quality.number(threshold.name, threshold.default, (0.0, 1e6))
        overrides[threshold.name] = value
    quality.finish()
    limits = QualityThresholds(**overrides)
    if limits.min_luminance > limits.max_luminance:
        raise ConfigError("quality.min_luminance must not exceed quality.max_luminance")
    for name in ("second_face_area_ratio", "max_clipped_fraction"):
        _check_range(f"quality.{name}", getattr(limits, name), (0.0, 1.0))

    vision = _section(document, "vision", required=False)
    runtime = vision.string("runtime", DEFAULT_RUNTIME)
    model = vision.string("model", "full")
    for name, value, allowed in (
        ("runtime", runtime, tuple(r.value for r in Runtime)),
        ("model", model, tuple(MODELS)),
    ):
        if value not in allowed:
            raise ConfigError(f"vision.{name} = {value!r} must be one of {list(allowed)}")
    zone_width = vision.number("zone_width", 1.0, (0.0, 4.0))
    vision_config = VisionConfig(
        runtime,
        model,
        zone_width or None,
        vision.number("min_score", 0.65, (0.05, 0.99)),
        vision.integer("capture_window_frames", 45, (1, 900)),
        vision.boolean("tracking", True),
        vision.boolean("exposure_correction", True),
        vision.integer("steady_frames", 2, (1, 30)),
        vision.integer("capture_attempts", 2, (1, MAX_ATTEMPTS)),
        vision.number("face_exposure_ev", 1.0, (0.0, MAX_EV)),
        vision.optional_path("models_dir", base),
    )
    if vision_config.steady_frames > vision_config.capture_window_frames:
        raise ConfigError(
            f"vision.steady_frames = {vision_config.steady_frames} cannot exceed"
            f" vision.capture_window_frames = {vision_config.capture_window_frames}"
        )
    vision.finish()

    ledger = _section(document, "ledger", required=False)
    ledger_path = ledger.path("path", base, state / "purge-ledger.jsonl")
    ledger.finish()

    capture = _section(document, "capture", required=False)
    mode = capture.string("mode", Mode.BIOMETRIC_FIRST)
    if mode not in tuple(Mode):
        raise ConfigError(f"capture.mode = {mode!r} must be one of {[m.value for m in Mode]}")
    capture.finish()

    scanner_config = _scanner(document, port_name)

    agents = _section(document, "agents", required=False)
    agents_config = AgentsConfig(
        agents.path("file", base, ledger_path.parent / "agents.json"),
        agents.number("action_ttl_s", ACTION_TTL_S, (5.0, 600.0)),
    )
    agents.finish()

    boarding_log = _section(document, "boarding_log", required=False)
    boarding_log_path = boarding_log.path("path", base, ledger_path.parent / "boarding-log.jsonl")
    boarding_log.finish()
    if boarding_log_path == ledger_path:
        raise ConfigError("boarding_log.path must not be the purge ledger's file (ledger.path)")

    service_config = ServiceConfig(
        service.path("status_path", base, ledger_path.parent / "status.json"),
        service.number("stall_s", DEFAULT_STALL_S, STALL_S_RANGE),
        service.number("session_refresh_s", DEFAULT_SESSION_REFRESH_S, SESSION_REFRESH_S_RANGE),
    )
    service.finish()

    screens_settings = _screens(document, base)

    return GateConfig(
        device_id=device_id,
        camera=camera_spec,
        matcher=matcher_config,
        serial=serial_config,
        flight=flight_config,
        quality=limits,
        ledger_path=ledger_path,
        vision=vision_config,
        capture_mode=mode,
        service=service_config,
        scanner=scanner_config,
        agents=agents_config,
        boarding_log_file=boarding_log_path,
        screens=screens_settings,
        data_dir=state,
    )


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdecimal() and 1 <= int(port) <= 65535)


def load_config(path: Path | str) -> GateConfig:
    """Read and check ``path``; raises :class:`ConfigError` naming what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    try:
        document = parse_toml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from exc
    except ValueError as exc:  # not TOML, or nested too deeply to follow
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    apply_env_overrides(document, os.environ)
    config = parse_config(document, path.resolve().parent)
    return dataclasses.replace(config, source_path=path)


def load_service_config(path: Path | str) -> GateConfig:
    """The configuration exactly as ``gatectl run`` checks it: the file (:func:`load_config`)
    and what the service needs beyond it (:func:`check_service_config`). ``gatectl
    selftest`` uses this too, so a unit that passes its self-test starts."""
    config = load_config(path)
    check_service_config(config)
    return config


ENV_PREFIX = "GATE_CFG__"


def apply_env_overrides(document: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Development overrides: ``GATE_CFG__<SECTION>__<KEY>=<value>`` replaces one key.

    The value is read as a TOML value (``42``, ``true``, ``"text"``, ``["a", "b"]``) and,
    failing that, taken as a plain string; it is then checked like the file's own values.
    """
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or not section or not key:
            raise ConfigError(f"{name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        try:
            value = parse_toml(f"value = {text}")["value"]
        except NestedTooDeeply as exc:
            raise ConfigError(f"{name}: {exc}") from exc
        except tomllib.TOMLDecodeError:
            value = text  # not a TOML value: the text itself
        table = document.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: [{section}] is not a table in the file")
        table[key] = value


__all__ = [
    "DEADLINE_S_RANGE",
    "DEFAULT_SESSION_REFRESH_S",
    "DEFAULT_STALL_S",
    "DEVICE_ID",
    "ENV_PREFIX",
    "FRAME_HEIGHT_RANGE",
    "FRAME_WIDTH_RANGE",
    "MAX_AGENT_PREFIX_CHARS",
    "MIN_RELAY_KEY_BYTES",
    "PULSE_MS_RANGE",
    "REPEAT_RANGE",
    "SCANNER_BAUDRATES",
    "SCANNER_STDIN",
    "SCANNER_TERMINATORS",
    "SECTIONS",
    "SESSION_REFRESH_S_RANGE",
    "STALL_S_RANGE",
    "AgentsConfig",
    "GateConfig",
    "MatcherConfig",
    "ScannerConfig",
    "SerialConfig",
    "ServiceConfig",
    "VisionConfig",
    "apply_env_overrides",
    "check_key_files",
    "check_service_config",
    "control_character",
    "key_file_modes",
    "load_config",
    "load_service_config",
    "parse_camera_source",
    "parse_config",
    "read_relay_key",
]

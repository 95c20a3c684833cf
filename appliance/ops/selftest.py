"""``gatectl selftest``: a PASS/FAIL checklist a technician can act on, one line per check.

Checks, in order (a check whose prerequisite failed is SKIPped, not failed twice):

- config: the TOML loads (``appliance.config.load_config``);
- models: the detector model files match their pinned hashes (``verified_model``);
- detector: the face detector finds one face in a known image (scikit-image's
  astronaut, from the demo assets or from scikit-image itself);
- camera: the configured source delivers frames (each one zeroized after looking);
- serial: HELLO, status and the indicator cycle over the serial link
  (``firmware_bridge.serial_check``); the relay is pulsed only with ``--relay``;
- matcher: ``grpc.health.v1`` over mutual TLS says SERVING;
- certificate: the device certificate names this device and is valid (days left;
  WARN under 30 days, FAIL when expired or not yet valid);
- clock: skew against the matching service's clock (see :func:`measure_clock_skew`);
- key permissions: device key, relay key and ledger key are owner-only (0600);
- ledger: the purge ledger's hash chain and signatures verify (``appliance.custody.audit``);
- disk: free space where the ledger lives is above ``--min-free-mb``.

WARN does not fail the run; any FAIL makes the exit code 1. ``--json`` prints one JSON
object instead of the checklist.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.errors import ConfigError
from appliance.service.config import GateConfig, key_file_modes, load_service_config
from gate_contract.keys import PkiLayout

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
CERT_WARN_DAYS = 30
SKEW_WARN_MS = 2_000
SKEW_FAIL_MS = 10_000  # verdicts are refused beyond 30 s (gate_contract.verdicts); act well before
DEFAULT_MIN_FREE_MB = 200
CAMERA_FRAMES = 5
CAMERA_TIMEOUT_S = 10.0


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""
    hint: str = ""


@dataclass
class Report:
    config_path: str
    device_id: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def add(self, name: str, status: str, detail: str = "", hint: str = "") -> Check:
        check = Check(name, status, detail, hint if status in (FAIL, WARN) else "")
        self.checks.append(check)
        return check

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "config": self.config_path,
            "device_id": self.device_id,
            "failed": [c.name for c in self.checks if c.status == FAIL],
            "checks": [asdict(c) for c in self.checks],
        }


# --------------------------------------------------------------------------- the checks


def check_models(report: Report, config: GateConfig, models_dir: Path | None) -> bool:
    from appliance.errors import ModelError
    from appliance.vision.models import verified_model

    vision = config.vision
    # the zone model, and the short-range model that follows the face when tracking
    variants = dict.fromkeys([vision.model, *(["short"] if vision.tracking else [])])
    try:
        names = [verified_model(v, models_dir, vision.runtime).path.name for v in variants]
    except (ModelError, OSError) as exc:
        report.add(
            "models",
            FAIL,
            str(exc),
            "re-run set-up (scripts/acquire_assets.py) to fetch and re-pin the model files",
        )
        return False
    report.add("models", PASS, f"{' and '.join(names)} match their pinned SHA-256")
    return True


def _known_face_image():
    import cv2

    from appliance.paths import demo_assets_dir

    path = demo_assets_dir() / "astronaut.png"
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is not None:
        return image, path.name
    try:
        import skimage.data

        return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), "skimage astronaut"
    except ImportError:
        return None, str(path)


def check_detector(report: Report, config: GateConfig, models_dir: Path | None) -> None:
    from appliance.errors import ModelError
    from appliance.vision.detectors import create_detector

    image, name = _known_face_image()
    if image is None:
        report.add(
            "detector",
            FAIL,
            f"known face image {name} missing",
            "run scripts/acquire_assets.py (it puts astronaut.png in the demo assets)",
        )
        return
    try:
        detector = create_detector(
            config.vision.runtime,
            config.vision.model,
            zone_width=None,
            min_score=config.vision.min_score,
            models_dir=models_dir,
        )
        faces = detector.detect(image)
    except (ModelError, OSError, RuntimeError, ValueError) as exc:
        report.add("detector", FAIL, f"{type(exc).__name__}: {exc}", "re-run set-up")
        return
    if len(faces) == 1:
        report.add("detector", PASS, f"one face in {name} (score {faces[0].score:.2f})")
    else:
        report.add(
            "detector",
            FAIL,
            f"{len(faces)} faces in {name}, expected 1",
            "check [vision] min_score and the model files",
        )


def check_camera(report: Report, config: GateConfig, timeout_s: float = CAMERA_TIMEOUT_S):
    from appliance.errors import CameraError
    from appliance.service.runner import open_source

    try:
        source = open_source(config.camera)
    except (CameraError, OSError) as exc:
        report.add("camera", FAIL, str(exc), _camera_hint(config))
        return
    frames, shape = 0, None
    deadline = time.monotonic() + timeout_s
    try:
        while frames < CAMERA_FRAMES and time.monotonic() < deadline:
            frame = source.read()
            if frame is None:
                if getattr(source, "ended", False) or not getattr(source, "live", True):
                    break
                continue
            shape = frame.shape
            frame.fill(0)  # looked at, never kept
            frames += 1
    except Exception as exc:
        report.add("camera", FAIL, f"{type(exc).__name__}: {exc}", _camera_hint(config))
        return
    finally:
        source.close()
    if frames:
        report.add("camera", PASS, f"{frames} frame(s) of {shape[1]}x{shape[0]}")
    else:
        report.add("camera", FAIL, "no frame from the camera", _camera_hint(config))


def _camera_hint(config: GateConfig) -> str:
    if config.camera.kind == "picamera2":
        return "check the ribbon cable and `rpicam-hello --list-cameras`"
    if config.camera.kind == "opencv":
        return "check the USB cable and [camera] source (ls /dev/video*)"
    return "[camera] source names a replay with no readable frames"


def check_serial(report: Report, config: GateConfig, relay: bool) -> None:
    from appliance.service.instance import port_in_use_message
    from firmware_bridge.tools.serial_check import run_serial_test

    held = port_in_use_message(config.lock_path, config.serial.port)
    if held:  # opening the port would steal it from the gate that serves
        report.add("serial", FAIL, held, "`systemctl stop gate-appliance`, then run selftest")
        return
    lines: list[str] = []
    ok = run_serial_test(
        config.serial.port, config.serial.relay_key, pulse=relay, out=lines.append, dwell=0
    )
    failed = [line for line in lines if line.startswith("[FAIL]")]
    summary = lines[-1] if lines else ""
    if ok:
        detail = summary + ("" if relay else "; relay not pulsed (use --relay)")
        report.add("serial", PASS, detail)
    else:
        report.add(
            "serial",
            FAIL,
            (failed[0] if failed else summary).removeprefix("[FAIL] "),
            "check the cable and [serial] port (ls /dev/serial/by-id/), that the MCU is"
            " powered and has this relay key; stop the service first (it holds the port)",
        )


def _client(config: GateConfig):
    from appliance.matching.client import MatchingClient
    from gate_contract.keys import PkiLayout

    return MatchingClient(
        config.matcher.target,
        PkiLayout(config.matcher.pki_dir),
        config.device_id,
        deadline_s=min(config.matcher.deadline_s, 5.0),
        retries=1,
    )


def check_matcher(report: Report, config: GateConfig) -> bool:
    try:
        client = _client(config)
    except (OSError, ValueError) as exc:
        report.add(
            "matcher",
            FAIL,
            f"device PKI in {config.matcher.pki_dir}: {exc}",
            "run `gatectl provision` to enrol this unit",
        )
        return False
    try:
        serving = client.health()
        if serving:
            report.add("matcher", PASS, f"{config.matcher.target} SERVING over mutual TLS")
            check_gallery(report, config, client)
            return True
    finally:
        client.close()
    report.add(
        "matcher",
        FAIL,
        f"{config.matcher.target} not serving (unreachable, TLS refused or not SERVING)",
        "check the network and [matcher] target; an expired certificate also ends here",
    )
    return False


def check_gallery(report: Report, config: GateConfig, client) -> None:
    """The flight of the day's gallery, through a session as the service opens it: an
    empty one means nobody can be matched at this gate (a WARN, not a FAIL: the airline
    may enrol it later, and the service picks it up by itself)."""
    from appliance.errors import MatchingUnavailable

    try:
        session = client.open_session(config.flight)
    except MatchingUnavailable as exc:
        report.add("gallery", FAIL, f"no session for {config.flight.name}: {exc}",
                   "check [flight] and the certificate's airport")  # fmt: skip
        return
    if session.gallery_size == 0:
        report.add(
            "gallery",
            WARN,
            f"the gallery of {config.flight.name} is EMPTY: nobody can be matched",
            "enrol the flight on the matching service, or check [flight] (`gatectl flight set`)",
        )
    else:
        report.add("gallery", PASS, f"{session.gallery_size} travellers for {config.flight.name}")


def check_certificate(report: Report, config: GateConfig, now: dt.datetime | None = None):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from gate_contract.keys import PkiLayout

    path = PkiLayout(config.matcher.pki_dir).device_cert
    try:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError) as exc:
        report.add("certificate", FAIL, f"{path}: {exc}", "run `gatectl provision`")
        return
    now = now or dt.datetime.now(dt.UTC)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = names[0].value if names else ""
    renew = "renew: `gatectl provision --rotate` with a new token"
    if name != config.device_id:
        report.add("certificate", FAIL, f"names {name!r}, not {config.device_id!r}", "re-provision")
    elif now < cert.not_valid_before_utc:
        report.add(
            "certificate",
            FAIL,
            f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check the clock (timedatectl)",
        )
    elif now > cert.not_valid_after_utc:
        report.add("certificate", FAIL, f"expired on {cert.not_valid_after_utc:%Y-%m-%d}", renew)
    else:
        days = (cert.not_valid_after_utc - now).days
        detail = f"{days} days left (until {cert.not_valid_after_utc:%Y-%m-%d})"
        report.add("certificate", PASS if days >= CERT_WARN_DAYS else WARN, detail, renew)


def measure_clock_skew(config: GateConfig) -> tuple[int, int]:
    """(skew_ms, uncertainty_ms): the matching service's clock minus ours.

    Method: one probe capture round trip. A few non-image bytes are sealed to the
    service's key like any capture and sent with ``Verify``; the service answers with a
    verdict (IMAGE_UNUSABLE or GALLERY_NOT_READY) that carries its own ``issued_at_ms``
    and is signed, so the time is the service's and authentic (the signature and ids are
    checked; the usual 30 s clock window is not, since measuring it is the point). The
    verdict was issued between our send and receive times, so the skew is
    ``issued_at_ms - (t_send + t_receive) / 2`` within half the round trip. A probe
    the service refuses as outside its capture window (OUT_OF_RANGE) means the clocks are
    more than a minute apart. A purge receipt (reason ``selftest``) closes the probe.
    """
    from appliance.custody.transaction import CaptureTransaction
    from appliance.matching.client import MatchingClient
    from gate_contract.clock import now_ms
    from gate_contract.keys import PkiLayout
    from gate_contract.sealing import seal_into, sealed_size

    client = MatchingClient(
        config.matcher.target,
        PkiLayout(config.matcher.pki_dir),
        config.device_id,
        deadline_s=config.matcher.deadline_s,
        retries=0,
    )
    try:
        client.open_session(config.flight)
        probe = CaptureTransaction(config.device_id)
        plain = b"gate selftest clock probe (not an image)"
        sealed = probe.track(bytearray(sealed_size(len(plain))))
        probe.captured_at_ms = now_ms()
        binding = client.binding(probe.capture_id, probe.captured_at_ms)
        seal_into(sealed, plain, client.sealing_key, binding)
        t0 = time.time_ns()
        verdict = client.verify(probe.capture_id, probe.captured_at_ms, sealed, clock_window=False)
        t1 = time.time_ns()
        probe.sent_at_ms = probe.captured_at_ms
        client.report_purge(probe.purge("selftest", "selftest"))
    finally:
        client.close()
    midpoint_ms = (t0 + t1) // 2 // 1_000_000
    return verdict.issued_at_ms - midpoint_ms, max(1, (t1 - t0) // 2 // 1_000_000)


def check_clock(report: Report, config: GateConfig) -> None:
    from appliance.errors import MatchingFailure, MatchingUnavailable
    from gate_contract.errors import VerdictRejected

    hint = "check time sync (timedatectl; chrony/systemd-timesyncd reaching its server)"
    try:
        skew, error = measure_clock_skew(config)
    except MatchingUnavailable as exc:
        if exc.failure is MatchingFailure.CLOCK_OFF:
            report.add("clock", FAIL, "more than 60 s off the matching service's clock", hint)
        else:
            name = exc.status or "error"
            report.add("clock", FAIL, f"probe failed: {name}", "check the matching service")
        return
    except (OSError, ValueError, VerdictRejected) as exc:
        report.add("clock", FAIL, f"probe failed: {exc}", "check the matching service")
        return
    detail = f"{skew:+d} ms against the matching service (+/- {error} ms)"
    size = abs(skew) - error
    if size > SKEW_FAIL_MS:
        report.add("clock", FAIL, detail, hint)
    elif size > SKEW_WARN_MS:
        report.add("clock", WARN, detail, hint)
    else:
        report.add("clock", PASS, detail)


def check_key_permissions(report: Report, config: GateConfig) -> None:
    required = [PkiLayout(config.matcher.pki_dir).device_key, config.serial.relay_key_file]
    modes = dict(key_file_modes(config))
    missing = [str(path) for path in required if path not in modes]
    loose = [f"{path} is {mode:04o}" for path, mode in modes.items() if mode & 0o077]
    if missing:
        report.add("key permissions", FAIL, "missing: " + ", ".join(missing), "re-provision")
    elif loose:
        files = " ".join(item.split(" is ")[0] for item in loose)
        report.add("key permissions", FAIL, "; ".join(loose), f"chmod 600 {files}")
    else:
        report.add("key permissions", PASS, f"{len(modes)} key files are 0600 (owner only)")


def check_ledger(report: Report, config: GateConfig) -> None:
    from appliance.custody.audit import audit_verify
    from appliance.custody.ledger import list_segments

    if not list_segments(config.ledger_path):
        report.add("ledger", PASS, f"no records yet at {config.ledger_path}")
        return
    lines: list[str] = []
    code = audit_verify(config.ledger_path, out=lines.append)
    if code == 0:
        report.add("ledger", PASS, lines[-1] if lines else "intact")
    else:
        problem = next((line for line in lines if line.startswith(("BROKEN", "TORN"))), "")
        report.add(
            "ledger",
            FAIL,
            problem or (lines[-1] if lines else "does not verify"),
            f"keep the unit's ledger for the auditor; run `gatectl audit verify --ledger"
            f" {config.ledger_path}` and report it",
        )


def check_disk(report: Report, config: GateConfig, min_free_mb: float) -> None:
    folder = config.ledger_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    free_mb = usage.free / 1_048_576
    detail = f"{free_mb:.0f} MB free on {folder} ({100 * usage.free / usage.total:.0f}%)"
    if free_mb < min_free_mb:
        report.add(
            "disk",
            FAIL,
            f"{detail}; at least {min_free_mb:.0f} MB needed",
            "free space (journalctl --vacuum-size=100M; old ledger segments to the auditor)",
        )
    else:
        report.add("disk", PASS, detail)


# ------------------------------------------------------------------------------ running


def run_selftest(
    config_path: Path,
    *,
    relay: bool = False,
    min_free_mb: float = DEFAULT_MIN_FREE_MB,
    models_dir: Path | None = None,
    camera_timeout_s: float = CAMERA_TIMEOUT_S,
) -> Report:
    report = Report(str(config_path))
    try:
        config = load_service_config(config_path)  # exactly what `gatectl run` checks
    except ConfigError as exc:
        report.add("config", FAIL, str(exc), "fix the named key, or re-run `gatectl provision`")
        return report
    report.device_id = config.device_id
    report.add("config", PASS, f"{config_path} loads as `gatectl run` reads it")
    models_dir = models_dir or config.models_dir
    if check_models(report, config, models_dir):
        check_detector(report, config, models_dir)
    else:
        report.add("detector", SKIP, "model files did not check out")
    check_camera(report, config, camera_timeout_s)
    check_serial(report, config, relay)
    if check_matcher(report, config):
        check_certificate(report, config)
        check_clock(report, config)
    else:
        check_certificate(report, config)
        report.add("clock", SKIP, "matching service not reachable")
    check_key_permissions(report, config)
    check_ledger(report, config)
    check_disk(report, config, min_free_mb)
    return report


def format_report(report: Report) -> list[str]:
    lines = [f"gate selftest: {report.device_id or '?'} ({report.config_path})"]
    for check in report.checks:
        lines.append(f"[{check.status}] {check.name:<16} {check.detail}")
        if check.hint:
            lines.append(f"{'':7}{'':16} fix: {check.hint}")
    failed = [c.name for c in report.checks if c.status == FAIL]
    warned = [c.name for c in report.checks if c.status == WARN]
    if failed:
        lines.append(f"selftest FAILED: {len(failed)} of {len(report.checks)}: {', '.join(failed)}")
    else:
        note = f" ({len(warned)} warning(s): {', '.join(warned)})" if warned else ""
        lines.append(f"selftest PASSED: {len(report.checks)} checks{note}")
    return lines


def main(
    config_path: Path,
    *,
    relay: bool = False,
    as_json: bool = False,
    min_free_mb: float = DEFAULT_MIN_FREE_MB,
    out: Callable[[str], object] = print,
) -> int:
    report = run_selftest(config_path, relay=relay, min_free_mb=min_free_mb)
    if as_json:
        out(json.dumps(report.as_dict(), sort_keys=True))
    else:
        for line in format_report(report):
            out(line)
    return 0 if report.ok else 1


__all__ = [
    "CAMERA_FRAMES",
    "CAMERA_TIMEOUT_S",
    "CERT_WARN_DAYS",
    "DEFAULT_MIN_FREE_MB",
    "SKEW_FAIL_MS",
    "SKEW_WARN_MS",
    "Check",
    "Report",
    "check_camera",
    "check_certificate",
    "check_clock",
    "check_detector",
    "check_disk",
    "check_gallery",
    "check_key_permissions",
    "check_ledger",
    "check_matcher",
    "check_models",
    "check_serial",
    "format_report",
    "main",
    "measure_clock_skew",
    "run_selftest",
]

"""The developer commands that need both sides: plugged into ``gatectl`` and ``gate-matcher``.

Each CLI loads these through entry points (``gatectl.commands``, ``gate_matcher.commands``
in ``pyproject.toml``), so neither program imports this package, yet ``gatectl demo``,
``gatectl simulate``, ``gatectl bench ...`` and ``gate-matcher bench`` run the real parts
of both sides on one machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gate_contract.command_line import finite_number, non_negative_number, positive_number, share
from gate_contract.progress import Progress


def print_figures(result: dict, as_json: bool) -> None:
    """A bench's figures: one JSON line, or one aligned line per figure."""
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


def _recognizer(args: argparse.Namespace):
    """The recognizer named on the command line, or a clear error (None)."""
    from matching_service.errors import RecognizerUnavailable
    from matching_service.recognizers import ensure_available

    try:
        ensure_available(args.recognizer)
    except RecognizerUnavailable as exc:
        print(f"{args.prog_name}: {exc}", file=sys.stderr)
        return None
    return args.recognizer


def _demo(args: argparse.Namespace) -> int:
    from testbed import demo

    recognizer = _recognizer(args)
    if recognizer is None:
        return 2
    screens = None
    if args.screens:
        screens = demo.ScreensOptions(
            port=args.port, hold_s=args.hold, agent_wait_s=args.agent_wait, fps=args.fps
        )
    return demo.main(
        args.dataset,
        args.json,
        recognizer,
        args.photos_per_traveller,
        args.interpreter,
        screens=screens,
    )


def _simulate(args: argparse.Namespace) -> int:
    from testbed.simulate import simulate_main

    recognizer = _recognizer(args)
    if recognizer is None:
        return 2
    return simulate_main(
        args.travellers,
        args.dataset,
        args.json,
        None,
        args.seed,
        recognizer,
        args.photos_per_traveller,
        args.interpreter,
    )


def _matcher_options(parser: argparse.ArgumentParser, prog: str) -> None:
    """``--recognizer`` and ``--photos-per-traveller``, as the matching service takes them."""
    from matching_service.recognizers import DEFAULT_RECOGNIZER, RECOGNIZERS

    parser.add_argument(
        "--recognizer",
        choices=RECOGNIZERS,
        default=DEFAULT_RECOGNIZER,
        help="the matching service's face recognizer (mobilefacenet is opt-in: README)",
    )
    parser.add_argument(
        "--photos-per-traveller",
        type=_at_least_one,
        default=3,
        metavar="K",
        help="document photos enrolled per traveller where the dataset has them",
    )
    parser.set_defaults(prog_name=prog)


def _interpreter_option(parser: argparse.ArgumentParser) -> None:
    from firmware_bridge.simulator.backends import INTERPRETERS

    parser.add_argument(
        "--interpreter",
        choices=INTERPRETERS,
        default="cpython",
        help="run the gate firmware on CPython or on MicroPython (webassembly, under node)",
    )


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _exposure_stops(text: str) -> float:
    from appliance.vision.exposure import MAX_EV

    value = finite_number(text)
    if not 0 <= value <= MAX_EV:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_EV:g} stops")
    return value


def _bench_vision(args: argparse.Namespace) -> int:
    from testbed.bench.vision import bench_vision, dataset_frames, packaged_frames

    frames = (lambda: dataset_frames(args.dataset)) if args.dataset else packaged_frames
    result = bench_vision(
        frames,
        runtime=args.runtime,
        variant=args.model,
        peer=not args.no_peer,
        progress=Progress.for_command(as_json=args.json),
    )
    print_figures(result, args.json)
    return 0


def _bench_capture(args: argparse.Namespace) -> int:
    import dataclasses

    from appliance.errors import ModelError
    from appliance.service.config import VisionConfig
    from testbed.bench.capture import bench_capture

    defaults = VisionConfig()
    vision = dataclasses.replace(
        defaults,
        runtime=args.runtime,
        model=args.model,
        tracking=not args.no_tracking,
        exposure_correction=not args.no_exposure_correction,
        steady_frames=args.steady_frames or defaults.steady_frames,
        capture_attempts=args.capture_attempts or defaults.capture_attempts,
        face_exposure_ev=defaults.face_exposure_ev
        if args.face_exposure_ev is None
        else args.face_exposure_ev,
    )
    progress = Progress.for_command(as_json=args.json)
    details = None
    if args.details:
        try:
            details = args.details.open("w", encoding="utf-8")
        except OSError as exc:
            print(f"gatectl bench capture: cannot write {args.details}: {exc}", file=sys.stderr)
            return 2

    def on_scene(result) -> None:
        if details is not None:
            details.write(json.dumps(result.details()) + "\n")
        if not args.json:
            shown = result.error or result.outcome
            if result.time_to_capture_s is not None:
                shown += f" at {result.time_to_capture_s:.2f} s"
            if result.whose_face not in (None, "traveller"):
                shown += f" (face of: {result.whose_face})"
            if result.verified is not None:
                shown += " verified" if result.verified else " NOT verified"
                if result.captures_sent > 1:
                    shown += f" ({result.captures_sent} captures sent)"
            elif args.gallery is not None and result.identity and result.expect == "capture":
                shown += f" (not verified: {result.identity!r} is not in the gallery)"
            progress.write(f"{result.scene:>24}: {shown}")

    recognizer = _recognizer(args)
    if recognizer is None:
        return 2
    try:
        result = bench_capture(
            args.scenes,
            gallery=args.gallery,
            recognizer=recognizer,
            photos_per_traveller=args.photos_per_traveller,
            vision=vision,
            on_scene=on_scene,
            progress=progress,
        )
    except (ValueError, ModelError) as exc:
        print(f"gatectl bench capture: {exc}", file=sys.stderr)
        return 2
    finally:
        if details is not None:
            details.close()
    print_figures(result, args.json)
    return 0


def _bench_serial(args: argparse.Namespace) -> int:
    from firmware_bridge.simulator import SimulatorError
    from firmware_bridge.tools.bench import bench_serial

    try:
        result = bench_serial(
            rounds=args.rounds, fuzz_frames=args.fuzz_frames, interpreter=args.interpreter
        )
    except SimulatorError as exc:
        print(f"gatectl bench serial: {exc}", file=sys.stderr)
        return 2
    print_figures(result, args.json)
    return 0 if result["relay_opened_by_fuzz"] == 0 else 1


def _bench_firmware(args: argparse.Namespace) -> int:
    from firmware_bridge.simulator import SimulatorError
    from firmware_bridge.tools.firmware_bench import bench_firmware

    try:
        result = bench_firmware(args.frames, Progress.for_command(as_json=args.json))
    except (SimulatorError, ValueError) as exc:
        print(f"gatectl bench firmware: {exc}", file=sys.stderr)
        return 2
    print_figures(result, args.json)
    return 0


def _bench_purge(args: argparse.Namespace) -> int:
    from testbed.bench.purge import bench_purge

    result = bench_purge(args.transactions)
    print_figures(result, args.json)
    return 0 if result["image_files_written"] == 0 else 1


def _bench_flood(args: argparse.Namespace) -> int:
    from testbed.bench.flood import bench_flood

    result = bench_flood(
        args.streams, args.hold_s, progress=Progress.for_command(as_json=args.json)
    )
    print_figures(result, args.json)
    return 0 if result["gate_verify_failures"] == 0 and result["gate_health_failed"] == 0 else 1


def _bench_faults(args: argparse.Namespace) -> int:
    from testbed.bench.faults import FAULTS, bench_faults
    from testbed.native_writes import TraceUnavailable

    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.list:
        print("\n".join(FAULTS))
        return 0

    progress = Progress.for_command(as_json=args.json)

    def on_row(row) -> None:
        if not args.json:
            progress.write(json.dumps(row.as_dict()))

    try:
        result = bench_faults(names, keep=args.keep, on_row=on_row, progress=progress)
    except (ValueError, FileNotFoundError, TraceUnavailable) as exc:
        print(f"gatectl bench faults: {exc}", file=sys.stderr)
        return 2
    print_figures(result, args.json)
    return 0 if result["failed"] == 0 else 1


def _bench_load(args: argparse.Namespace) -> int:
    from testbed.bench.load import bench_load

    try:
        gates = [int(k) for k in args.gates.split(",") if k.strip()]
    except ValueError:
        gates = []
    if not gates or any(k < 1 for k in gates) or args.duration <= 0:
        print("gatectl bench load: --gates K[,K...] (each >= 1), --duration > 0", file=sys.stderr)
        return 2
    result = bench_load(gates, args.duration, Progress.for_command(as_json=args.json))
    print_figures(result, args.json)
    return 0 if result["errors"] == 0 else 1


def _bench_soak(args: argparse.Namespace) -> int:
    from testbed.bench.soak import bench_soak

    if args.duration <= 0:
        print("gatectl bench soak: --duration must be positive", file=sys.stderr)
        return 2
    result = bench_soak(args.duration, progress=Progress.for_command(as_json=args.json))
    print_figures(result, args.json)
    return 0 if result["service_survived"] else 1


def _bench_screens(args: argparse.Namespace) -> int:
    from testbed.bench.screens import bench_screens

    print_figures(bench_screens(args.frames, Progress.for_command(as_json=args.json)), args.json)
    return 0


def _scenes_make(args: argparse.Namespace) -> int:
    from testbed.scene_generator import SceneMakingError, make_scenes

    def report(name: str, frames: int, seconds: float) -> None:
        if not args.quiet:
            print(f"{name}: {frames} frames in {seconds:.1f} s", flush=True)

    def skipped(identity: str, why: str) -> None:
        print(f"gatectl scenes make: {identity} left out: {why}", file=sys.stderr, flush=True)

    tags = [t for t in (args.tags or "").split(",") if t] or None
    try:
        written = make_scenes(
            args.dataset,
            args.out,
            per_tag=args.per_tag,
            seed=args.seed,
            **({"tags": tags} if tags else {}),
            exposure_stops=args.exposure_track or (),
            on_scene=report,
            on_skipped=skipped,
        )
    except SceneMakingError as exc:
        print(f"gatectl scenes make: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} scenes in {args.out}")
    return 0


_RUNTIME_CHOICES = ("onnxruntime", "litert", "mediapipe")
_RUNTIME_HELP = "the detector's runtime"
_MODEL_CHOICES = ("full", "short")
_MODEL_HELP = "the BlazeFace model that searches the frame: full range or short range"


def add_gatectl_commands(commands: argparse._SubParsersAction) -> None:
    """``gatectl demo``, ``simulate`` and the gate-side ``bench`` commands."""
    demo = commands.add_parser("demo", help="run a boarding queue end to end on embedded defaults")
    demo.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="folder of <identity>/*.jpg for a larger run (default: the demo photos)",
    )
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    _matcher_options(demo, "gatectl demo")
    _interpreter_option(demo)
    demo.add_argument(
        "--screens",
        action="store_true",
        help="serve the traveller display and agent station on loopback (prints the URLs)",
    )
    demo.add_argument(
        "--port", type=int, default=0, metavar="PORT", help="with --screens: port (0: any free)"
    )
    demo.add_argument(
        "--hold",
        type=non_negative_number,
        default=3.0,
        metavar="SECONDS",
        help="with --screens: how long each outcome is shown",
    )
    demo.add_argument(
        "--agent-wait",
        type=non_negative_number,
        default=30.0,
        metavar="SECONDS",
        help="with --screens: how long an opt-out waits for the agent",
    )
    demo.add_argument(
        "--fps",
        type=positive_number,
        default=30.0,
        metavar="FPS",
        help="with --screens: camera replay pace, frames per second",
    )
    demo.set_defaults(handler=_demo)

    simulate = commands.add_parser(
        "simulate", help="board a flight through the real parts with a mix of exceptions"
    )
    simulate.add_argument(
        "--travellers", type=_at_least_one, default=50, metavar="N", help="travellers to board"
    )
    simulate.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="<identity>/*.jpg (default: the demo photos)",
    )
    simulate.add_argument(
        "--seed", type=int, default=0, metavar="N", help="the mix and order of travellers"
    )
    simulate.add_argument("--json", action="store_true", help="one JSON object on the last line")
    _matcher_options(simulate, "gatectl simulate")
    _interpreter_option(simulate)
    simulate.set_defaults(handler=_simulate)

    scenes = commands.add_parser("scenes", help="camera scenes for the capture benchmark")
    scene_commands = scenes.add_subparsers(dest="scenes", required=True)
    make = scene_commands.add_parser(
        "make", help="write gate scenes (videos + scene.json) from a folder of face photos"
    )
    make.add_argument(
        "--dataset", type=Path, required=True, metavar="DIR", help="<identity>/*.jpg photos"
    )
    make.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the scenes go (never inside a repository)",
    )
    make.add_argument(
        "--per-tag", type=_at_least_one, default=5, metavar="N", help="scenes per tag"
    )
    make.add_argument(
        "--seed", type=int, default=0, metavar="N", help="which photos, poses and lights"
    )
    make.add_argument(
        "--tags", metavar="TAG[,TAG...]", help="comma-separated tags (default: every tag)"
    )
    make.add_argument(
        "--exposure-track",
        type=finite_number,
        action="append",
        metavar="STOPS",
        help="also film each scene with the exposure biased this many stops (video_ev+1.avi"
        " for 1), for a camera asked for more exposure; repeatable, each doubles the time",
    )
    make.add_argument("--quiet", action="store_true", help="no line per scene")
    make.set_defaults(handler=_scenes_make)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    benches = bench.add_subparsers(dest="bench", required=True)
    vision = benches.add_parser("vision", help="detect + quality per 1280x720 frame vs dlib HOG")
    vision.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="<identity>/*.jpg and _nonface/ (default: images that packages ship)",
    )
    vision.add_argument("--model", choices=_MODEL_CHOICES, default="full", help=_MODEL_HELP)
    vision.add_argument("--runtime", choices=_RUNTIME_CHOICES, default="litert", help=_RUNTIME_HELP)
    vision.add_argument("--no-peer", action="store_true", help="skip the dlib HOG peer")
    vision.add_argument("--json", action="store_true", help="one JSON object on the last line")
    vision.set_defaults(handler=_bench_vision)
    capture = benches.add_parser(
        "capture", help="the capture path on gate scenes (videos + scene.json), as the gate runs it"
    )
    capture.add_argument(
        "--scenes", type=Path, required=True, metavar="DIR", help="<scene>/video.avi + scene.json"
    )
    capture.add_argument(
        "--gallery",
        type=Path,
        metavar="DIR",
        help="<identity>/*.jpg: verify each capture 1:1 (reference matcher)",
    )
    _matcher_options(capture, "gatectl bench capture")
    capture.add_argument(
        "--runtime", choices=_RUNTIME_CHOICES, default="litert", help=_RUNTIME_HELP
    )
    capture.add_argument("--model", choices=_MODEL_CHOICES, default="full", help=_MODEL_HELP)
    capture.add_argument("--no-tracking", action="store_true", help="[vision] tracking = false")
    capture.add_argument(
        "--no-exposure-correction",
        action="store_true",
        help="[vision] exposure_correction = false",
    )
    capture.add_argument(
        "--steady-frames", type=int, metavar="N", help="[vision] steady_frames (default: its own)"
    )
    capture.add_argument(
        "--capture-attempts",
        type=_at_least_one,
        metavar="N",
        help="[vision] capture_attempts, 1 to 3: captures sent per traveller (default: its own)",
    )
    capture.add_argument(
        "--face-exposure-ev",
        type=_exposure_stops,
        metavar="STOPS",
        help="[vision] face_exposure_ev, 0 to 2: exposure a dark face may ask a scene's"
        " exposure tracks for (0: off; default: its own)",
    )
    capture.add_argument(
        "--details", type=Path, metavar="FILE", help="write one JSON line per scene here"
    )
    capture.add_argument("--json", action="store_true", help="one JSON object on the last line")
    capture.set_defaults(handler=_bench_capture)
    serial_bench = benches.add_parser("serial", help="command round trips and fuzzing over a pty")
    serial_bench.add_argument(
        "--rounds", type=_at_least_one, default=200, metavar="N", help="command round trips"
    )
    serial_bench.add_argument(
        "--fuzz-frames",
        type=int,
        default=5000,
        metavar="N",
        help="random and mutated frames sent at the firmware",
    )
    _interpreter_option(serial_bench)
    serial_bench.add_argument(
        "--json", action="store_true", help="one JSON object on the last line"
    )
    serial_bench.set_defaults(handler=_bench_serial)
    firmware = benches.add_parser(
        "firmware",
        help="firmware cost per frame and per tick on CPython and MicroPython, RP2040 estimate",
    )
    firmware.add_argument(
        "--frames", type=_at_least_one, default=2000, metavar="N", help="frames per timed batch"
    )
    firmware.add_argument("--json", action="store_true", help="one JSON object on the last line")
    firmware.set_defaults(handler=_bench_firmware)
    purge = benches.add_parser("purge", help="verdict -> every buffer zeroized, 720p capture")
    purge.add_argument(
        "--transactions",
        type=_at_least_one,
        default=1000,
        metavar="N",
        help="captures made and purged",
    )
    purge.add_argument("--json", action="store_true", help="one JSON object on the last line")
    purge.set_defaults(handler=_bench_purge)
    flood = benches.add_parser(
        "flood", help="idle Verify streams from one device vs another gate's verifies"
    )
    flood.add_argument(
        "--streams", type=_at_least_one, default=10_000, metavar="N", help="idle streams"
    )
    flood.add_argument(
        "--hold-s",
        type=positive_number,
        default=20.0,
        metavar="SECONDS",
        help="how long they stay open",
    )
    flood.add_argument("--json", action="store_true", help="one JSON object on the last line")
    flood.set_defaults(handler=_bench_flood)
    faults = benches.add_parser(
        "faults", help="the fault matrix through real processes (root for the full-disk row)"
    )
    faults.add_argument(
        "--only", metavar="FAULT[,FAULT...]", help="these faults only (see --list; default: all)"
    )
    faults.add_argument("--list", action="store_true", help="name every fault and stop")
    faults.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep each row's files here (default: deleted)"
    )
    faults.add_argument("--json", action="store_true", help="one JSON object on the last line")
    faults.set_defaults(handler=_bench_faults)
    load = benches.add_parser(
        "load", help="K gates against one matching service: verifies/s, p50/p99, the knee"
    )
    load.add_argument(
        "--gates", default="1,2,4", metavar="K[,K...]", help="gates at once, one run per K"
    )
    load.add_argument(
        "--duration",
        type=positive_number,
        default=30.0,
        metavar="SECONDS",
        help="how long each K runs",
    )
    load.add_argument("--json", action="store_true", help="one JSON object on the last line")
    load.set_defaults(handler=_bench_load)
    soak = benches.add_parser(
        "soak", help="travellers through the real service; memory, files, threads over time"
    )
    soak.add_argument(
        "--duration",
        type=positive_number,
        default=600.0,
        metavar="SECONDS",
        help="how long it runs",
    )
    soak.add_argument("--json", action="store_true", help="one JSON object on the last line")
    soak.set_defaults(handler=_bench_soak)
    screens = benches.add_parser(
        "screens", help="vision time per frame with the screens closed, served, open"
    )
    screens.add_argument(
        "--frames", type=_at_least_one, default=300, metavar="N", help="frames per phase (30 fps)"
    )
    screens.add_argument("--json", action="store_true", help="one JSON object on the last line")
    screens.set_defaults(handler=_bench_screens)


def _bench_matcher(args: argparse.Namespace) -> int:
    from matching_service.errors import BenchError, RecognizerUnavailable
    from testbed.bench.matcher import bench_matcher

    progress = Progress.for_command(as_json=args.json)
    try:
        result = bench_matcher(
            args.dataset,
            gates=args.gates,
            impostor_share=args.impostor_share,
            recognizer=args.recognizer,
            photos_per_traveller=args.photos_per_traveller,
            workers=args.workers,
            emit=(lambda _: None) if args.json else progress.write,
            progress=progress,
        )
    except (BenchError, RecognizerUnavailable) as exc:
        print(f"gate-matcher bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def add_gate_matcher_commands(commands: argparse._SubParsersAction) -> None:
    """``gate-matcher bench``: accuracy and latency with real gates on the gRPC path."""
    bench = commands.add_parser("bench", help="accuracy and latency over the real gRPC path")
    bench.add_argument(
        "--dataset", type=Path, required=True, metavar="DIR", help="<identity>/*.jpg"
    )
    bench.add_argument(
        "--gates", type=_at_least_one, default=4, metavar="N", help="gates verifying at once"
    )
    bench.add_argument(
        "--impostor-share",
        type=share,
        default=0.2,
        metavar="SHARE",
        help="share of identities left out of the gallery as impostors, 0..1 (at most every"
        " second identity: above 0.5 counts as 0.5)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="encoder processes (default: one per CPU; 0: encode in the service process)",
    )
    bench.add_argument("--json", action="store_true", help="last line is one JSON object")
    _matcher_options(bench, "gate-matcher bench")
    bench.set_defaults(handler=_bench_matcher)


__all__ = ["add_gate_matcher_commands", "add_gatectl_commands", "print_figures"]

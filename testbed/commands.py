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


def print_figures(result: dict, as_json: bool) -> None:
    """A bench's figures: one JSON line, or one aligned line per figure."""
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


def _demo(args: argparse.Namespace) -> int:
    from testbed import demo

    return demo.main(args.dataset, args.json)


def _simulate(args: argparse.Namespace) -> int:
    from testbed.simulate import simulate_main

    return simulate_main(args.travellers, args.dataset, args.json, None, args.seed)


def _bench_vision(args: argparse.Namespace) -> int:
    from testbed.bench.vision import bench_vision, dataset_frames, packaged_frames

    frames = (lambda: dataset_frames(args.dataset)) if args.dataset else packaged_frames
    result = bench_vision(frames, runtime=args.runtime, variant=args.model, peer=not args.no_peer)
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
    )
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
            print(f"{result.scene:>24}: {shown}", flush=True)

    try:
        result = bench_capture(args.scenes, gallery=args.gallery, vision=vision, on_scene=on_scene)
    except (ValueError, ModelError) as exc:
        print(f"gatectl bench capture: {exc}", file=sys.stderr)
        return 2
    finally:
        if details is not None:
            details.close()
    print_figures(result, args.json)
    return 0


def _bench_serial(args: argparse.Namespace) -> int:
    from firmware_bridge.tools.bench import bench_serial

    result = bench_serial(rounds=args.rounds, fuzz_frames=args.fuzz_frames)
    print_figures(result, args.json)
    return 0 if result["relay_opened_by_fuzz"] == 0 else 1


def _bench_purge(args: argparse.Namespace) -> int:
    from testbed.bench.purge import bench_purge

    result = bench_purge(args.transactions)
    print_figures(result, args.json)
    return 0 if result["image_files_written"] == 0 else 1


def _scenes_make(args: argparse.Namespace) -> int:
    from testbed.scene_generator import SceneMakingError, make_scenes

    def report(name: str, frames: int, seconds: float) -> None:
        if not args.quiet:
            print(f"{name}: {frames} frames in {seconds:.1f} s", flush=True)

    tags = [t for t in (args.tags or "").split(",") if t] or None
    try:
        written = make_scenes(
            args.dataset,
            args.out,
            per_tag=args.per_tag,
            seed=args.seed,
            **({"tags": tags} if tags else {}),
            on_scene=report,
        )
    except SceneMakingError as exc:
        print(f"gatectl scenes make: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} scenes in {args.out}")
    return 0


def add_gatectl_commands(commands: argparse._SubParsersAction) -> None:
    """``gatectl demo``, ``simulate``, ``scenes make`` and ``bench vision | capture | serial |
    purge``."""
    demo = commands.add_parser("demo", help="run a boarding queue end to end on embedded defaults")
    demo.add_argument("--dataset", type=Path, help="folder of <identity>/*.jpg for a larger run")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.set_defaults(handler=_demo)

    simulate = commands.add_parser(
        "simulate", help="board a flight through the real parts with a mix of exceptions"
    )
    simulate.add_argument("--travellers", type=int, default=50)
    simulate.add_argument("--dataset", type=Path, help="<identity>/*.jpg (default: packaged)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--json", action="store_true", help="one JSON object on the last line")
    simulate.set_defaults(handler=_simulate)

    scenes = commands.add_parser("scenes", help="camera scenes for the capture benchmark")
    scene_commands = scenes.add_subparsers(dest="scenes", required=True)
    make = scene_commands.add_parser(
        "make", help="write gate scenes (videos + scene.json) from a folder of face photos"
    )
    make.add_argument("--dataset", type=Path, required=True, help="<identity>/*.jpg photos")
    make.add_argument(
        "--out", type=Path, required=True, help="where the scenes go (never inside a repository)"
    )
    make.add_argument("--per-tag", type=int, default=5, help="scenes per tag (default 5)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--tags", help="comma-separated tags (default: every tag)")
    make.add_argument("--quiet", action="store_true", help="no line per scene")
    make.set_defaults(handler=_scenes_make)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    benches = bench.add_subparsers(dest="bench", required=True)
    vision = benches.add_parser("vision", help="detect + quality per 1280x720 frame vs dlib HOG")
    vision.add_argument(
        "--dataset",
        type=Path,
        help="<identity>/*.jpg and _nonface/ (default: images that packages ship)",
    )
    vision.add_argument("--model", choices=("full", "short"), default="full")
    vision.add_argument("--runtime", choices=("onnxruntime", "mediapipe"), default="onnxruntime")
    vision.add_argument("--no-peer", action="store_true", help="skip the dlib HOG peer")
    vision.add_argument("--json", action="store_true", help="one JSON object on the last line")
    vision.set_defaults(handler=_bench_vision)
    capture = benches.add_parser(
        "capture", help="the capture path on gate scenes (videos + scene.json), as the gate runs it"
    )
    capture.add_argument(
        "--scenes", type=Path, required=True, help="<scene>/video.avi + scene.json"
    )
    capture.add_argument(
        "--gallery", type=Path, help="<identity>/*.jpg: verify each capture 1:1 (reference matcher)"
    )
    capture.add_argument("--runtime", choices=("onnxruntime", "mediapipe"), default="onnxruntime")
    capture.add_argument("--model", choices=("full", "short"), default="full")
    capture.add_argument("--no-tracking", action="store_true", help="[vision] tracking = false")
    capture.add_argument(
        "--no-exposure-correction",
        action="store_true",
        help="[vision] exposure_correction = false",
    )
    capture.add_argument(
        "--steady-frames", type=int, metavar="N", help="[vision] steady_frames (default: its own)"
    )
    capture.add_argument("--details", type=Path, help="write one JSON line per scene here")
    capture.add_argument("--json", action="store_true", help="one JSON object on the last line")
    capture.set_defaults(handler=_bench_capture)
    serial_bench = benches.add_parser("serial", help="command round trips and fuzzing over a pty")
    serial_bench.add_argument("--rounds", type=int, default=200)
    serial_bench.add_argument("--fuzz-frames", type=int, default=5000)
    serial_bench.add_argument(
        "--json", action="store_true", help="one JSON object on the last line"
    )
    serial_bench.set_defaults(handler=_bench_serial)
    purge = benches.add_parser("purge", help="verdict -> every buffer zeroized, 720p capture")
    purge.add_argument("--transactions", type=int, default=1000)
    purge.add_argument("--json", action="store_true", help="one JSON object on the last line")
    purge.set_defaults(handler=_bench_purge)


def _bench_matcher(args: argparse.Namespace) -> int:
    from matching_service.errors import BenchError
    from testbed.bench.matcher import bench_matcher

    try:
        result = bench_matcher(
            args.dataset,
            gates=args.gates,
            impostor_share=args.impostor_share,
            workers=args.workers,
            emit=(lambda _: None) if args.json else print,
        )
    except BenchError as exc:
        print(f"gate-matcher bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def add_gate_matcher_commands(commands: argparse._SubParsersAction) -> None:
    """``gate-matcher bench``: accuracy and latency with real gates on the gRPC path."""
    bench = commands.add_parser("bench", help="accuracy and latency over the real gRPC path")
    bench.add_argument("--dataset", type=Path, required=True)
    bench.add_argument("--gates", type=int, default=4)
    bench.add_argument("--impostor-share", type=float, default=0.2)
    bench.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="encoder processes (default: CPUs; 0: encode in the service process)",
    )
    bench.add_argument("--json", action="store_true", help="last line is one JSON object")
    bench.set_defaults(handler=_bench_matcher)


__all__ = ["add_gate_matcher_commands", "add_gatectl_commands", "print_figures"]

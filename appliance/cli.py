"""`gatectl`: the appliance's command line for field technicians and developers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from appliance import demo

    return demo.main(args.dataset, args.json)


def _run(args: argparse.Namespace) -> int:
    from appliance import service

    return service.main(args.config)


def _bench_vision(args: argparse.Namespace) -> int:
    from appliance.bench import bench_vision, dataset_frames, packaged_frames

    frames = dataset_frames(args.dataset) if args.dataset else packaged_frames()
    result = bench_vision(frames, variant=args.model, peer=not args.no_peer)
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatectl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a boarding queue end to end on embedded defaults")
    demo.add_argument("--dataset", type=Path, help="folder of <identity>/*.jpg for a larger run")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser("run", help="run the gate service (what systemd starts)")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(handler=_run)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    benches = bench.add_subparsers(dest="bench", required=True)
    vision = benches.add_parser("vision", help="detect + quality per 1280x720 frame vs dlib HOG")
    vision.add_argument(
        "--dataset",
        type=Path,
        help="<identity>/*.jpg and _nonface/ (default: images that packages ship)",
    )
    vision.add_argument("--model", choices=("full", "short"), default="full")
    vision.add_argument("--no-peer", action="store_true", help="skip the dlib HOG peer")
    vision.add_argument("--json", action="store_true", help="one JSON object on the last line")
    vision.set_defaults(handler=_bench_vision)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

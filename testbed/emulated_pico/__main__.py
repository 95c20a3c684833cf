"""``python -m testbed.emulated_pico --flash DIR [--jumper]``: serve an emulated Pico."""

import argparse
import sys
import time
from pathlib import Path

from firmware_bridge.mcu.pico_main import PIN_SERVICE
from firmware_bridge.simulator import SimulatorError
from testbed.emulated_pico.board import EmulatedPico


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.emulated_pico")
    parser.add_argument("--flash", type=Path, required=True, help="folder that keeps its flash")
    parser.add_argument("--jumper", action="store_true", help="SERVICE jumper on (GP22 low)")
    args = parser.parse_args()
    inputs = {PIN_SERVICE: 0} if args.jumper else {}
    try:
        board = EmulatedPico(args.flash, inputs).start()
    except SimulatorError as exc:
        print(f"emulated pico: {exc}", file=sys.stderr)
        return 1
    try:
        print(board.port, flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        board.stop()


sys.exit(main())

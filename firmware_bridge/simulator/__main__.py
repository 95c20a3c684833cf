"""``python -m firmware_bridge.simulator``: a simulated gate MCU on a pseudo-terminal."""

import sys

from firmware_bridge.simulator.pty import main

sys.exit(main())

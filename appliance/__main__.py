"""``python -m appliance`` is ``gatectl``."""

import sys

from appliance.ops.cli import main

sys.exit(main())

"""A stand-in for ``mpremote`` that records what it was asked to do (a test double).

It appends one JSON line to ``$FAKE_MPREMOTE_LOG``: its pid, its argv, and for every
``fs cp LOCAL :REMOTE`` the local file's bytes (hex) and permission bits *at copy time*
(the deploy deletes its staging folder afterwards). ``$FAKE_MPREMOTE_MODE``:

* ``ok`` (default): answer the counter step as a board would (``GATE-COUNTER epoch 0/0``);
* ``hang``: never finish, like a board whose firmware ignores Ctrl-C;
* ``fail``: exit 1 the way mpremote does when it cannot get a raw REPL.
"""

import json
import os
import re
import sys
import time

args = sys.argv[1:]
record = {"pid": os.getpid(), "argv": args, "copies": {}}
for i, word in enumerate(args):
    if word == "cp" and i + 2 < len(args) and os.path.isfile(args[i + 1]):
        with open(args[i + 1], "rb") as handle:
            data = handle.read()
        record["copies"][args[i + 2]] = {
            "hex": data.hex(),
            "mode": os.stat(args[i + 1]).st_mode & 0o777,
        }
with open(os.environ["FAKE_MPREMOTE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")

mode = os.environ.get("FAKE_MPREMOTE_MODE", "ok")
if mode == "hang":
    time.sleep(3600)
if mode == "fail":
    print("mpremote: could not enter raw repl", file=sys.stderr)
    sys.exit(1)
for word in args:
    floor = re.search(r"_held\[0\] \+ 1, (\d+)\)", word)
    if floor:
        print(f"GATE-COUNTER {floor.group(1)} 0/0")

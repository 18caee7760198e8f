"""Runs one rebuild of the stand-in pipeline (rebuild_support.py) in its own process, so tests can
SIGKILL it mid-way or run two at once.

usage: rebuild_child.py CACHE COUNTER KEYRING OUTPUT MIRROR [OPTIONS_JSON]
OPTIONS_JSON: engine options (hold_drivers=MARKER, …) plus "pause_at"/"pause_marker" (a publish
point to stop at), "keep" and "no_wait". Prints the outcome as JSON; an IronforgeError prints
{"error": …} and exits with its exit code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import rebuild_support as R
from builder.errors import IronforgeError
from builder.rebuild.command import rebuild_one

if __name__ == "__main__":
    cache, counter, keyring, output = (Path(a) for a in sys.argv[1:5])
    mirror = sys.argv[5]
    opts = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    pause_at, marker = opts.pop("pause_at", None), opts.pop("pause_marker", None)
    keep, no_wait = opts.pop("keep", None), opts.pop("no_wait", False)

    def pause(point: str) -> None:
        if point == pause_at:
            Path(marker).write_text(point)
            time.sleep(600)

    eng = R.engine(cache, counter, keyring, **opts)
    try:
        o = rebuild_one(eng, R.recipe(mirror), R.STAGES, output, keep=keep, wait=not no_wait, pause=pause)
    except IronforgeError as exc:
        print(json.dumps(exc.to_dict()))
        sys.exit(exc.exit_code)
    print(json.dumps(o.to_dict(), default=str))

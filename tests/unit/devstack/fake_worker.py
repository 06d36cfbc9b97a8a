"""A stand-in for the dispatcher and the bots in the devstack tests.

Writes its environment (as JSON) to FAKE_WORKER_OUT/<argv[1]>.json, then waits for SIGTERM
(prints "worker stopped" and exits 0).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> None:
    name = sys.argv[1]
    out = Path(os.environ["FAKE_WORKER_OUT"]) / f"{name}.json"

    def stop(_signum: int, _frame: FrameType | None) -> None:
        print("worker stopped", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(os.environ)))
    tmp.replace(out)
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    main()

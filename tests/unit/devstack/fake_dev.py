"""`switchboard dev` (run_dev) with the stand-in server and a no-op migrate, for the tests.

Usage: python fake_dev.py [run_dev arguments...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from server.devstack import stack

FAKE_SERVER = [sys.executable, str(Path(__file__).with_name("fake_server.py"))]
NOOP = [sys.executable, "-c", "print('migrated')"]


def fake_command(*args: str) -> list[str]:
    return FAKE_SERVER if args[:1] == ("serve",) else NOOP


if __name__ == "__main__":
    vars(stack)["server_command"] = fake_command  # DevStack looks it up at call time
    vars(stack)["worker_command"] = lambda name: None  # no dispatcher or bots against a fake
    sys.exit(stack.run_dev(sys.argv[1:]))

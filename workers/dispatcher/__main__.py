"""``python -m workers.dispatcher``."""

from __future__ import annotations

import sys

from workers.dispatcher.main import main

if __name__ == "__main__":
    sys.exit(main())

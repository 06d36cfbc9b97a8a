"""Run a script with only some installed distributions importable (what an image would hold).

    python import_guard.py BLOCKED_TOP_LEVEL_MODULES_JSON SCRIPT [ARGS...]

A blocked top-level module (and its submodules) fails to import, as it would in an image that
does not install it; everything else imports as usual. The caller computes the list (see
gateway_image.py: every installed module outside the image's distributions).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: set[str]) -> None:
        self.blocked = blocked

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"{fullname} is not in this image", name=fullname)
        return None


def main(argv: list[str]) -> None:
    sys.meta_path.insert(0, _Blocker(set(json.loads(argv[0]))))
    sys.argv = argv[1:]
    runpy.run_path(argv[1], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Print requirement lines from pyproject.toml, so the images install exactly its version ranges.

    requirements.py PYPROJECT [--extra NAME]... [--only NAME]...

Prints `[project] dependencies` plus those of each `--extra`, one per line; self-references
(`switchboard[...]`) are skipped. With `--only`, only the named distributions are printed, and a
named one that pyproject.toml does not list is an error.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str], only: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    self_name = _name(project["name"])
    optional = project.get("optional-dependencies", {})
    found = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise ValueError(f"{pyproject}: no optional dependency group {extra!r}")
        found += optional[extra]
    found = [r for r in found if _name(r) != self_name]
    if only:
        wanted = {_name(n) for n in only}
        found = [r for r in found if _name(r) in wanted]
        if missing := sorted(wanted - {_name(r) for r in found}):
            raise ValueError(f"{pyproject}: does not list {missing}")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="requirements.py", description=__doc__)
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        lines = requirements(args.pyproject, args.extra, args.only)
    except (OSError, KeyError, ValueError) as exc:
        print(f"requirements.py: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

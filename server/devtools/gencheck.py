"""`make gen-check`: the committed gen/ must be exactly what `make gen` produces, every time.

The Makefile runs `make gen`, then `snapshot`, then `make gen` again, then `verify`:

* `snapshot` records a digest of every file under gen/ that git sees (tracked or untracked, not
  ignored), in .build/gen-check.json;
* `verify` first compares the second generation with that snapshot (generation must be
  deterministic), then asks git whether gen/ differs from the commit: modified, deleted and new
  untracked files all fail the check. It reads `git status` and never touches the index, so it
  works the same in a developer's tree and in CI's fresh clone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

from server.devtools._git import git, git_bytes, repo_root

GEN_DIR = "gen"
STATE_FILE = Path(".build/gen-check.json")


def gen_files(root: Path) -> list[str]:
    """Paths under gen/ that git sees: tracked (even if deleted) and untracked, not ignored."""
    out = git_bytes(
        "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", GEN_DIR, cwd=root
    )
    return sorted({p for p in out.decode().split("\0") if p})


def digest(root: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for rel in gen_files(root):
        path = root / rel
        result[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"
    return result


def status_entries(root: Path) -> list[tuple[str, str]]:
    """(status, path) for every path under gen/ that differs from HEAD, untracked files included."""
    out = git_bytes(
        "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", GEN_DIR, cwd=root
    )
    fields = out.decode().split("\0")
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if not field:
            continue
        code, path = field[:2], field[3:]
        if "R" in code or "C" in code:
            i += 1  # a rename or copy is followed by its source path
        entries.append((code, path))
    return entries


def _describe(code: str) -> str:
    if code == "??":
        return "new, not committed"
    if "D" in code:
        return "deleted by generation"
    return "changed by generation"


def _tool_versions(root: Path) -> str:
    versions = []
    for dist in ("grpcio-tools", "mypy-protobuf", "protobuf"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    for pkg in ("@bufbuild/buf", "@bufbuild/protoc-gen-es"):
        manifest = root / "node_modules" / pkg / "package.json"
        try:
            versions.append(f"{pkg} {json.loads(manifest.read_text())['version']}")
        except (OSError, ValueError, KeyError):
            versions.append(f"{pkg} (not installed)")
    return ", ".join(versions)


def snapshot(root: Path) -> int:
    state = root / STATE_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(digest(root), indent=1, sort_keys=True))
    return 0


def verify(root: Path) -> int:
    state = root / STATE_FILE
    if not state.is_file():
        print(f"{STATE_FILE} is missing: run `make gen-check`, not this script alone")
        return 2
    first: dict[str, str] = json.loads(state.read_text())
    second = digest(root)
    unstable = sorted(p for p in first.keys() | second.keys() if first.get(p) != second.get(p))
    if unstable:
        print("`make gen` is not deterministic: two runs in a row differ in")
        for path in unstable:
            print(f"  {path}")
        return 1

    entries = status_entries(root)
    if entries:
        print(
            "gen/ is stale: `make gen` output differs from the commit. Run `make gen` and commit:"
        )
        for code, path in entries:
            print(f"  {path}: {_describe(code)}")
        diffstat = git("diff", "--stat", "--", GEN_DIR, cwd=root)
        if diffstat:
            print(diffstat)
        print(f"Generators here: {_tool_versions(root)}.")
        print(
            "The generated files record generator versions: pin them to what produced the commit."
        )
        return 1
    print(f"gen/ is fresh ({len(second)} files, generation is deterministic)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.devtools.gencheck", description=__doc__)
    parser.add_argument("step", choices=["snapshot", "verify"])
    args = parser.parse_args(argv)
    root = repo_root()
    if args.step == "snapshot":
        return snapshot(root)
    return verify(root)


if __name__ == "__main__":
    sys.exit(main())

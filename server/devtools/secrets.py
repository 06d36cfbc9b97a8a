"""`make security` (second half): no secret may enter the repository unreviewed.

``check`` (the default) scans every file git tracks or would add (untracked, not ignored) with the
plugins and filters recorded in .secrets.baseline and fails on any finding that is not in the
baseline. Unlike ``detect-secrets-hook`` it never rewrites the baseline and does not care about
line numbers, so it is a pure check that behaves the same locally and in CI.

``update`` re-catalogs the findings into .secrets.baseline (keeping audit marks). Run it after
reviewing that a new finding is not a real secret, or mark the line ``# pragma: allowlist secret``.
Generated code, lock files and tool directories are excluded (EXCLUDE_FILES).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

from detect_secrets.core import baseline as ds_baseline
from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.main import main as detect_secrets_main
from detect_secrets.settings import transient_settings

from server.devtools._git import git_bytes, repo_root

BASELINE = ".secrets.baseline"
# Generated code (base64 descriptors), lock files (integrity hashes), installed tools.
EXCLUDE_FILES = (
    r"^(gen/|node_modules/|\.venv/|\.build/|.*\.egg-info/|package-lock\.json$|\.secrets\.baseline$)"
)


def candidate_files(root: Path) -> list[str]:
    """Files git tracks or would add, relative to `root`, that exist on disk."""
    out = git_bytes("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root)
    paths = sorted({p for p in out.decode().split("\0") if p})
    return [p for p in paths if (root / p).is_file() and not (root / p).is_symlink()]


def new_secrets(root: Path, files: list[str]) -> list[tuple[str, int, str]]:
    """(file, line, type) of every finding in `files` that the baseline does not list."""
    loaded = ds_baseline.load_from_file(str(root / BASELINE))
    with transient_settings({}):
        known = ds_baseline.load(loaded, filename=BASELINE)
        found = SecretsCollection()  # paths relative to the working directory, the repo root
        for path in files:
            found.scan_file(path)
        fresh = found - known
        return sorted((name, int(s.line_number), str(s.type)) for name, s in fresh)


def check(root: Path) -> int:
    if not (root / BASELINE).is_file():
        print(f"{BASELINE} is missing: run `python -m server.devtools.secrets update`")
        return 2
    files = candidate_files(root)
    found = new_secrets(root, files)
    if not found:
        print(f"detect-secrets: no new secret in {len(files)} files")
        return 0
    print("detect-secrets: possible secrets not in .secrets.baseline:")
    for name, line, kind in found:
        print(f"  {name}:{line}: {kind}")
    print(
        "Remove real secrets (and rotate them). For a false positive, add "
        "`# pragma: allowlist secret` to the line, or review and run "
        "`python -m server.devtools.secrets update` and commit .secrets.baseline."
    )
    return 1


def update(root: Path) -> int:
    files = candidate_files(root)
    if (root / BASELINE).is_file():
        return detect_secrets_main(["scan", "--baseline", BASELINE, *files])
    args = ["scan", "--exclude-files", EXCLUDE_FILES, *files]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = detect_secrets_main(args)
    (root / BASELINE).write_text(buffer.getvalue())
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.devtools.secrets", description=__doc__)
    parser.add_argument("action", nargs="?", default="check", choices=["check", "update"])
    args = parser.parse_args(argv)
    root = repo_root()
    os.chdir(root)  # detect-secrets reports and matches paths relative to the working directory
    return check(root) if args.action == "check" else update(root)


if __name__ == "__main__":
    sys.exit(main())

"""Small helpers around the git command line, shared by the devtools scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class GitError(RuntimeError):
    """A git command failed."""


def git_executable() -> str:
    found = shutil.which("git")
    if found is None:
        raise GitError("git is not installed")
    return found


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Runs `git ARGS` and returns its standard output without the trailing newline."""
    # Fixed argument lists, no shell.
    result = subprocess.run(  # noqa: S603  # nosec B603
        [git_executable(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.rstrip("\n")


def git_bytes(*args: str, cwd: Path | None = None) -> bytes:
    """Runs `git ARGS` and returns its raw standard output (for -z listings and archives)."""
    # Fixed argument lists, no shell.
    result = subprocess.run(  # noqa: S603  # nosec B603
        [git_executable(), *args], cwd=cwd, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {result.stderr.decode().strip()}")
    return result.stdout


def resolve_commit(ref: str, cwd: Path | None = None) -> str | None:
    """The commit id `ref` names, or None when it names no commit."""
    out = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=cwd, check=False)
    return out or None


def repo_root(cwd: Path | None = None) -> Path:
    return Path(git("rev-parse", "--show-toplevel", cwd=cwd))

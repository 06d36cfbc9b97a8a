"""`make buf-breaking`: the working tree's proto/ must not break the contracts of a baseline commit.

The baseline is, in this order:

1. `BUF_BREAKING_AGAINST=<git ref>` (or `--against <git ref>`), when given;
2. the merge base of HEAD and `origin/main`, when that remote branch exists and HEAD has commits
   of its own (a feature branch: every change since it forked is checked);
3. `HEAD~1` otherwise, including on `origin/main` itself (CI's fresh clone): the last commit and
   any uncommitted change are checked.

When the baseline has no proto/ (the first commit), there is nothing to break and the check passes.

`buf breaking --against .git#ref=...` cannot be used: the google/api and google/rpc protos the
contracts import live only in the ignored .build/protos (copied by `make protos`). So the
baseline's proto/ is exported with `git archive` into a temporary workspace next to a copy of
.build/protos, built into an image, and `buf breaking proto --against <image>` runs with the
rules of buf.yaml (FILE).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from server.devtools._git import GitError, git, git_bytes, repo_root, resolve_commit

PROTO_DIR = "proto"
DEPS_DIR = Path(".build/protos")
ENV_AGAINST = "BUF_BREAKING_AGAINST"

_BASELINE_BUF_YAML = f"""\
version: v2
modules:
  - path: {PROTO_DIR}
  - path: {DEPS_DIR.as_posix()}
"""


class BreakingError(RuntimeError):
    """The check could not run (as opposed to: it ran and found breaking changes)."""


@dataclass(frozen=True, slots=True)
class Baseline:
    commit: str | None
    why: str


def choose_baseline(root: Path, against: str | None) -> Baseline:
    """The commit to compare with, or a Baseline without commit when there is none."""
    if against:
        commit = resolve_commit(against, cwd=root)
        if commit is None:
            raise BreakingError(
                f"{ENV_AGAINST}={against} names no commit here (in a shallow clone, fetch it first)"
            )
        return Baseline(commit, against)

    head = resolve_commit("HEAD", cwd=root)
    if head is None:
        return Baseline(None, "the repository has no commit yet")

    if resolve_commit("origin/main", cwd=root) is not None:
        base = git("merge-base", "HEAD", "origin/main", cwd=root, check=False)
        if base and base != head:
            return Baseline(base, "the merge base of HEAD and origin/main")

    parent = resolve_commit("HEAD~1", cwd=root)
    if parent is not None:
        return Baseline(parent, "HEAD~1")
    if git("rev-parse", "--is-shallow-repository", cwd=root) == "true":
        raise BreakingError(
            "shallow clone: HEAD~1 is not available. Fetch more history "
            f"(git fetch --deepen=1) or set {ENV_AGAINST}=<git ref>"
        )
    return Baseline(None, "HEAD is the first commit")


def has_proto(root: Path, commit: str) -> bool:
    listing = git("ls-tree", "-d", "--name-only", commit, "--", PROTO_DIR, cwd=root)
    return bool(listing.strip())


def export_baseline(root: Path, commit: str, workspace: Path) -> None:
    """Writes the baseline's proto/, a copy of .build/protos and a buf.yaml into `workspace`."""
    archive = git_bytes("archive", "--format=tar", commit, "--", PROTO_DIR, cwd=root)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(workspace, filter="data")
    shutil.copytree(root / DEPS_DIR, workspace / DEPS_DIR)
    (workspace / "buf.yaml").write_text(_BASELINE_BUF_YAML)


def buf_executable(root: Path) -> str:
    buf = os.environ.get("BUF") or str(root / "node_modules" / ".bin" / "buf")
    if shutil.which(buf) is None:
        raise BreakingError(f"buf not found at {buf}: run `make deps`")
    return buf


def run_buf(buf: str, *args: str, cwd: Path) -> int:
    # buf from node_modules (or $BUF) with fixed arguments, no shell.
    result = subprocess.run([buf, *args], cwd=cwd, check=False)  # noqa: S603  # nosec B603
    return result.returncode


def check(root: Path, against: str | None) -> int:
    if not (root / DEPS_DIR).is_dir():
        raise BreakingError(f"{DEPS_DIR} is missing: run `make protos` (or `make buf-breaking`)")
    buf = buf_executable(root)
    baseline = choose_baseline(root, against)
    if baseline.commit is None:
        print(f"buf breaking: no baseline ({baseline.why}); nothing to compare")
        return 0
    short = baseline.commit[:12]
    if not has_proto(root, baseline.commit):
        print(f"buf breaking: the baseline {short} ({baseline.why}) has no {PROTO_DIR}/; passing")
        return 0

    print(f"buf breaking: {PROTO_DIR}/ against {short} ({baseline.why})")
    with tempfile.TemporaryDirectory(prefix="buf-breaking-") as tmp:
        workspace = Path(tmp)
        export_baseline(root, baseline.commit, workspace)
        image = workspace / "against.binpb"
        if run_buf(buf, "build", PROTO_DIR, "-o", str(image), cwd=workspace) != 0:
            raise BreakingError(f"the baseline's {PROTO_DIR}/ at {short} does not build")
        code = run_buf(
            buf, "breaking", PROTO_DIR, "--against", str(image), "--exclude-imports", cwd=root
        )
    if code == 0:
        print("buf breaking: no breaking change")
        return 0
    print(
        f"buf breaking: breaking changes against {short} (above). Keep the old field, value or "
        "RPC (deprecate it, reserve removed numbers and names) or version the package; to "
        f"compare with another revision set {ENV_AGAINST}=<git ref>."
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.devtools.breaking", description=__doc__)
    parser.add_argument(
        "--against",
        default=os.environ.get(ENV_AGAINST),
        help=f"git ref of the baseline (default: ${ENV_AGAINST}, else automatic)",
    )
    args = parser.parse_args(argv)
    try:
        return check(repo_root(), args.against)
    except (BreakingError, GitError) as exc:
        print(f"buf breaking: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

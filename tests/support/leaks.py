"""Find secrets in log files: used by a test and by the end-of-session check."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def leaked(secrets: Iterable[str], root: Path) -> list[tuple[Path, str]]:
    """(log file, first characters of the secret) for every secret found in any log under root."""
    found: list[tuple[Path, str]] = []
    wanted = [s for s in set(secrets) if len(s) >= 8]
    for path in sorted(root.rglob("*.log")):
        text = path.read_text(errors="replace")
        found.extend((path, secret[:6] + "…") for secret in wanted if secret in text)
    return found

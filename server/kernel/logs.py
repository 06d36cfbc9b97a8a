"""Structured JSON logs, with secrets scrubbed as a last line of defence.

Nothing should log a token in the first place (the pipeline logs ids, never metadata). The
formatter also replaces, in every finished line, each configured secret value and anything
shaped like one of our session tokens, in case a library or a mistake puts one in a message.
Scrubbing the final line (rather than each field) keeps the per-RPC cost to a few substring
searches.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from server.kernel.principal import SESSION_TOKEN_PREFIX

SESSION_TOKEN_PATTERN = re.compile(re.escape(SESSION_TOKEN_PREFIX) + r"[A-Za-z0-9_\-]{20,}")
_REDACTED = "[REDACTED]"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole. JSON escaping
        # could alter a secret with quotes or backslashes: scrub both spellings.
        found = {s for s in secrets if len(s) >= 8}
        found |= {json.dumps(s)[1:-1] for s in found}
        self._secrets = sorted(found, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.scrub(json.dumps(entry, default=str, ensure_ascii=False))

    def scrub(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, _REDACTED)
        if SESSION_TOKEN_PREFIX in line:
            line = SESSION_TOKEN_PATTERN.sub(_REDACTED, line)
        return line


def configure(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

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
from typing import Any, TextIO

from server.kernel.principal import SESSION_TOKEN_PREFIX

SESSION_TOKEN_PATTERN = re.compile(re.escape(SESSION_TOKEN_PREFIX) + r"[A-Za-z0-9_\-]{20,}")
_REDACTED = "[REDACTED]"
ACCESS_LOGGER = "switchboard.rpc"
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
            "ts": _timestamp(record.created),
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


def _timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


class AccessLog:
    """The one line per RPC, in the same JSON shape as every other line.

    Written straight to the stream: building a LogRecord and walking the logging machinery
    cost more than the line itself (a tenth of a GetMe's server time in a profile). It follows
    the ``switchboard.rpc`` logger's level, and goes through the same scrubber.
    """

    def __init__(self, formatter: JsonFormatter, stream: TextIO, *, enabled: bool) -> None:
        self._formatter = formatter
        self._stream = stream
        self.enabled = enabled

    def write(self, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        entry = {
            "ts": _timestamp(time.time()),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": "rpc",
        }
        entry.update(fields)
        self._stream.write(self._formatter.scrub(json.dumps(entry, default=str)) + "\n")


def configure(level: str, secrets: Iterable[str]) -> AccessLog:
    formatter = JsonFormatter(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    enabled = logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)
    return AccessLog(formatter, sys.stderr, enabled=enabled)

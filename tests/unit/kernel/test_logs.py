from __future__ import annotations

import io
import json
import logging

from server.kernel.logs import AccessLog, JsonFormatter


def test_json_logs_scrub_secrets_and_session_tokens() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(["very-secret-bot-token", 'quote"secret\\x']))
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    session = "sbs_" + "A" * 43
    logger.info("got %s and %s", "very-secret-bot-token", session, extra={"detail": session})
    logger.info("json-escaped %s", 'quote"secret\\x')
    try:
        raise ValueError("boom very-secret-bot-token")
    except ValueError:
        logger.exception("failed")

    text = stream.getvalue()
    assert "very-secret-bot-token" not in text
    assert session not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["msg"] == "got [REDACTED] and [REDACTED]"
    assert lines[0]["detail"] == "[REDACTED]"
    assert lines[1]["msg"] == "json-escaped [REDACTED]"
    assert "ValueError" in lines[2]["exc"]
    assert "quote" not in text


def test_access_log_line_is_json_and_scrubbed() -> None:
    stream = io.StringIO()
    access = AccessLog(JsonFormatter(["very-secret-bot-token"]), stream, enabled=True)
    access.write({"request_id": "very-secret-bot-token", "code": "OK", "duration_ms": 1.5})
    line = json.loads(stream.getvalue())
    assert line["msg"] == "rpc"
    assert line["logger"] == "switchboard.rpc"
    assert line["request_id"] == "[REDACTED]"
    assert line["code"] == "OK"
    assert line["ts"].endswith("Z")
    silent = io.StringIO()
    AccessLog(JsonFormatter(), silent, enabled=False).write({"code": "OK"})
    assert silent.getvalue() == ""

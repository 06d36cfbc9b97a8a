"""Opaque page tokens (AIP-158): a base64url JSON cursor the client hands back unchanged."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from server.kernel.errors import ERROR_DOMAIN, FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE) -> int:
    return requested if requested > 0 else default


def encode(cursor: dict[str, Any]) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> dict[str, Any] | None:
    """The cursor of a page token; None for the first page; INVALID_ARGUMENT if malformed."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        cursor = None
    if not isinstance(cursor, dict):
        raise invalid_token()
    return cursor


def invalid_token(
    message: str = "page_token is not a token this API returned", *, domain: str = ERROR_DOMAIN
) -> InvalidArgument:
    """The INVALID_PAGE_TOKEN error (a page token that is malformed or not for this query)."""
    return InvalidArgument(
        "INVALID_PAGE_TOKEN",
        message,
        violations=[
            FieldViolation("page_token", "is not a valid page token", "INVALID_PAGE_TOKEN")
        ],
        domain=domain,
    )

"""Sign Telegram Login Widget payloads the way Telegram does (independent of server code)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any


def signed_widget_payload(
    bot_token: str,
    telegram_user_id: int,
    *,
    first_name: str = "Test",
    last_name: str = "",
    username: str = "",
    auth_date: int | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": telegram_user_id,
        "first_name": first_name,
        "auth_date": int(time.time()) if auth_date is None else auth_date,
    }
    if last_name:
        fields["last_name"] = last_name
    if username:
        fields["username"] = username
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    secret = hashlib.sha256(bot_token.encode()).digest()
    fields["hash"] = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return fields

"""Settings of the bot process (``python -m bots``), from ``SWITCHBOARD_*`` environment variables.

Not the server's Settings: the bots are gRPC clients and need only where the server is, where the
Bot API is, how updates arrive, and the throttling limits. Bot tokens
(``SWITCHBOARD_<BOT>_BOT_TOKEN``) and service tokens (``SWITCHBOARD_SERVICE_TOKEN_<PRINCIPAL>``)
are read per bot by :mod:`bots.runtime.spec`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OFFICIAL_API_BASE", "BotsSettings"]

OFFICIAL_API_BASE = "https://api.telegram.org"
# What Telegram accepts as a webhook secret_token.
_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class BotsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", extra="ignore", frozen=True, populate_by_name=True
    )

    #: The Switchboard gRPC server ("host:port"); SWITCHBOARD_SERVER_ADDR, else SWITCHBOARD_GRPC_ADDR.
    server_addr: str = Field(
        default="127.0.0.1:50051",
        validation_alias=AliasChoices("SWITCHBOARD_SERVER_ADDR", "SWITCHBOARD_GRPC_ADDR"),
    )
    #: Bot API base URL (a local Bot API server or a fake one in tests).
    telegram_api_base: str = OFFICIAL_API_BASE
    #: "polling" (dev) or "webhook" (deploy).
    bot_mode: Literal["polling", "webhook"] = "polling"
    #: Public HTTPS base URL Telegram posts to; each bot gets <url>/<bot name>.
    bot_webhook_url: str = ""
    #: Checked against the X-Telegram-Bot-Api-Secret-Token header of every webhook request.
    bot_webhook_secret: SecretStr | None = None
    #: Where the webhook HTTP server listens ("host:port").
    bot_webhook_listen: str = "127.0.0.1:8081"
    #: Per-user throttling: at most `rate` updates per `window` seconds.
    bot_throttle_rate: int = Field(default=5, ge=1)
    bot_throttle_window: float = Field(default=3.0, gt=0)
    #: How long a resolved platform user (role, language) is reused, seconds (0: every update).
    bot_user_cache_ttl: float = Field(default=30.0, ge=0)
    #: Deadline of each server call, seconds.
    bot_rpc_timeout: float = Field(default=10.0, gt=0)
    #: getUpdates long-poll timeout, seconds.
    bot_polling_timeout: int = Field(default=10, ge=0, le=50)
    log_level: str = "info"

    @field_validator("telegram_api_base")
    @classmethod
    def _base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("bot_webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not _SECRET_PATTERN.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook(self) -> BotsSettings:
        if self.bot_mode == "webhook":
            if not self.bot_webhook_url.startswith(("https://", "http://")):
                raise ValueError("SWITCHBOARD_BOT_WEBHOOK_URL is required in webhook mode")
            if self.bot_webhook_secret is None:
                raise ValueError("SWITCHBOARD_BOT_WEBHOOK_SECRET is required in webhook mode")
        return self

    def webhook_listen(self) -> tuple[str, int]:
        host, _, port = self.bot_webhook_listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("SWITCHBOARD_BOT_WEBHOOK_LISTEN must be host:port")
        return host.strip("[]"), int(port)

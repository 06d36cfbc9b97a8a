"""Settings of the dispatcher process, from ``SWITCHBOARD_*`` variables and configs/<env>.yaml.

Not the server's Settings (the dispatcher needs no database): the sender settings use the same
names and defaults as the server's "Notifications" section (a unit test keeps them equal).
Bot tokens come from ``SWITCHBOARD_<BOT>_BOT_TOKEN`` (bot "login": SWITCHBOARD_LOGIN_BOT_TOKEN).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "SWITCHBOARD_"
ROOT = Path(__file__).resolve().parents[2]
_BOT_TOKEN_SUFFIX = "_BOT_TOKEN"  # noqa: S105 - a variable name suffix


def bot_token_variable(bot: str) -> str:
    """``"login"`` -> ``SWITCHBOARD_LOGIN_BOT_TOKEN``."""
    return f"{ENV_PREFIX}{bot.upper().replace('-', '_')}{_BOT_TOKEN_SUFFIX}"


def bot_tokens(environ: Mapping[str, str]) -> dict[str, str]:
    """Every ``SWITCHBOARD_<BOT>_BOT_TOKEN`` set, by bot name (lower case, '_' kept)."""
    found: dict[str, str] = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and name.endswith(_BOT_TOKEN_SUFFIX) and value.strip():
            bot = name[len(ENV_PREFIX) : -len(_BOT_TOKEN_SUFFIX)].lower()
            if bot:
                found[bot] = value.strip()
    return found


def _default_name() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}"


class DispatcherSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    env: Literal["dev", "test", "prod"] = "dev"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: The Switchboard gRPC server; SWITCHBOARD_SERVER_ADDR, else SWITCHBOARD_GRPC_ADDR.
    server_addr: str = Field(
        default="127.0.0.1:50051",
        validation_alias=AliasChoices("SWITCHBOARD_SERVER_ADDR", "SWITCHBOARD_GRPC_ADDR"),
    )
    service_token_dispatcher: SecretStr | None = None

    notifications_sender: Literal["real", "log", "auto"] = "real"
    telegram_api_base: str = "https://api.telegram.org"
    telegram_api_local: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    #: A PEM file of the CAs the SMTP server's certificate (STARTTLS) is checked against,
    #: instead of the system's; empty: the system's CAs.
    smtp_ca_file: str = ""
    smtp_from: str = "Switchboard <noreply@localhost>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)

    #: At most this many notifications in hand (waiting for their slot or being sent).
    dispatcher_concurrency: int = Field(default=64, ge=1, le=500)
    #: Reports are sent at most this often (batched), to spare the server's rate limit.
    dispatcher_report_interval_s: float = Field(default=0.2, ge=0)
    #: Deadline of one Bot API call.
    dispatcher_send_timeout_s: float = Field(default=20.0, gt=0)
    #: Deadline of each server call.
    dispatcher_rpc_timeout_s: float = Field(default=10.0, gt=0)
    #: A name for this instance in the server's logs.
    dispatcher_name: str = Field(default_factory=_default_name, max_length=64)

    @field_validator("telegram_api_base")
    @classmethod
    def _base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("smtp_password", "service_token_dispatcher", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("dispatcher_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return "".join(c if c.isalnum() or c in "_.:-" else "-" for c in value)[:64]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = os.environ.get(f"{ENV_PREFIX}ENV", "dev")
        directory = Path(os.environ.get(f"{ENV_PREFIX}CONFIG_DIR", ROOT / "configs"))
        path = directory / f"{env}.yaml"
        yaml = YamlConfigSettingsSource(settings_cls, yaml_file=path if path.exists() else None)
        return (init_settings, env_settings, _NoSecrets(settings_cls, yaml))


class _NoSecrets(PydanticBaseSettingsSource):
    """The YAML source without secrets (those only come from the environment)."""

    _SECRET = frozenset({"smtp_password", "service_token_dispatcher"})

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: object, field_name: str) -> tuple[object, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, object]:
        return {k: v for k, v in self._inner().items() if k not in self._SECRET}

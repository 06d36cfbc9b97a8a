"""One typed configuration, loaded once at start.

Precedence: defaults < ``configs/<env>.yaml`` < ``SWITCHBOARD_*`` environment variables.
Secrets (tokens, passwords) come only from the environment: a secret in a YAML file is an
error. A missing or invalid setting stops the process with one line naming it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "SWITCHBOARD_"
# "notifications" is the shared outbox every product domain enqueues into (not a product).
DOMAINS = ("identity", "notifications", "booking", "rooms", "status", "catalog", "trading")

MIN_SERVICE_TOKEN_LENGTH = 16

# Settings that may only come from the environment.
SECRET_FIELDS = frozenset({"login_bot_token", "data_key"})


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it in one line."""


class RateBucket(BaseModel):
    rate: float = Field(gt=0, description="tokens per second")
    burst: int = Field(ge=1)


class ServicePrincipalConfig(BaseModel):
    """A bot or worker. Its token comes from SWITCHBOARD_SERVICE_TOKEN_<NAME>."""

    scopes: list[str] = Field(default_factory=list)

    @staticmethod
    def token_variable(name: str) -> str:
        return f"{ENV_PREFIX}SERVICE_TOKEN_{name.upper().replace('-', '_')}"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    env: Literal["dev", "test", "prod"] = "dev"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    grpc_addr: str = "127.0.0.1:50051"
    metrics_addr: str = "127.0.0.1:9464"
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    domains: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["identity"])

    pg_dsn: str
    pg_pool_min: int = Field(default=2, ge=1)
    pg_pool_max: int = Field(default=10, ge=1)
    redis_url: str
    # AES-256-GCM key for secrets stored in PostgreSQL (server.kernel.crypto): 32 bytes,
    # urlsafe base64. `make dev` generates one into .data/; deploys set it from a secret.
    data_key: SecretStr

    # Identity.
    login_bot_token: SecretStr | None = None
    login_bot_username: str = "switchboard_login_bot"
    telegram_auth_max_age_s: int = Field(default=86_400, gt=0)
    session_ttl_s: int = Field(default=30 * 86_400, gt=0)
    # How long a replica may trust a session it has seen without asking PostgreSQL again.
    # Logout, promotion and deletion evict it on every replica at once (Redis pub/sub); the
    # TTL only bounds staleness when such a message is lost. 0 disables the cache.
    session_cache_ttl_s: float = Field(default=5.0, ge=0)
    handshake_ttl_s: int = Field(default=300, gt=0)
    handshake_heartbeat_s: float = Field(default=10.0, gt=0)
    super_admin_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    super_admin_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dev_login_enabled: bool = False
    service_principals: dict[str, ServicePrincipalConfig] = Field(default_factory=dict)

    # Kernel.
    rate_limit_enabled: bool = True
    rate_limits: dict[str, RateBucket] = Field(
        default_factory=lambda: {
            "default": RateBucket(rate=20, burst=40),
            "read": RateBucket(rate=100, burst=200),
            "write": RateBucket(rate=20, burst=40),
            "auth": RateBucket(rate=1, burst=10),
            "stream": RateBucket(rate=2, burst=10),
        }
    )
    # Addresses or CIDR networks of proxies (Envoy) whose x-forwarded-for is believed.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"]
    )

    @field_validator("domains", "super_admin_emails", "trusted_proxies", mode="before")
    @classmethod
    def _csv_strings(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("login_bot_token", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        # An empty token must never become an HMAC key anyone can compute.
        if (
            isinstance(value, str | SecretStr)
            and not str(value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
        ):
            return None
        return value

    @field_validator("data_key")
    @classmethod
    def _data_key_is_a_key(cls, value: SecretStr) -> SecretStr:
        from server.kernel.crypto import decode_key

        decode_key(value.get_secret_value())  # DataKeyError (a ValueError) names the variable
        return value

    @field_validator("super_admin_telegram_ids", mode="before")
    @classmethod
    def _csv_ints(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(DOMAINS))
        if unknown:
            raise ValueError(f"unknown domain(s) {unknown}; known: {list(DOMAINS)}")
        return value

    @model_validator(mode="after")
    def _service_tokens_are_strong(self) -> Settings:
        for name in self.service_principals:
            variable = ServicePrincipalConfig.token_variable(name)
            value = os.environ.get(variable, "").strip()
            if value and len(value) < MIN_SERVICE_TOKEN_LENGTH:
                raise ValueError(
                    f"{variable} must be at least {MIN_SERVICE_TOKEN_LENGTH} characters"
                )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _dev_login_only_in_dev(self) -> Settings:
        if self.dev_login_enabled and self.env != "dev":
            raise ValueError(
                f"dev_login_enabled is only allowed when env is 'dev' (env is {self.env!r})"
            )
        return self

    def service_tokens(self) -> dict[str, SecretStr]:
        """Tokens of the configured service principals that have one in the environment."""
        found: dict[str, SecretStr] = {}
        for name in self.service_principals:
            value = os.environ.get(ServicePrincipalConfig.token_variable(name), "").strip()
            if value:
                found[name] = SecretStr(value)
        return found

    def secret_values(self) -> list[str]:
        """Every secret value in force, for the log scrubber."""
        values = [t.get_secret_value() for t in self.service_tokens().values()]
        if self.login_bot_token is not None:
            values.append(self.login_bot_token.get_secret_value())
        values.append(self.data_key.get_secret_value())
        return values

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _yaml_source(settings_cls))


def config_dir() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG_DIR", ROOT / "configs"))


def _yaml_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    env = os.environ.get(f"{ENV_PREFIX}ENV", "dev")
    path = config_dir() / f"{env}.yaml"
    source = YamlConfigSettingsSource(settings_cls, yaml_file=path if path.exists() else None)
    leaked = SECRET_FIELDS & set(source())
    if leaked:
        raise ConfigError(
            f"{path}: {sorted(leaked)[0]} is a secret and may only come from the environment"
        )
    return source


def load(**overrides: Any) -> Settings:
    """Load and validate, turning the first problem into one clear ConfigError line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        variable = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ""
        hint = f" (set {variable})" if first["type"] == "missing" else ""
        raise ConfigError(f"invalid setting {name}: {first['msg']}{hint}") from None

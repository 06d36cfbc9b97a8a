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
SECRET_FIELDS = frozenset({"login_bot_token", "data_key", "turn_secret", "smtp_password"})


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
    # Connections to Redis per replica; a caller beyond it waits (up to 2 s) for a free one
    # instead of failing. Pub/sub listeners hold one each.
    redis_pool_max: int = Field(default=64, ge=4)
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
    # Email one-time codes (login and verification; docs/identity.md): lifetime, wrong
    # attempts before a code locks, and the per-address request limits.
    email_code_ttl_s: int = Field(default=600, gt=0)
    email_code_max_attempts: int = Field(default=5, ge=1)
    email_code_min_interval_s: float = Field(default=60.0, ge=0)
    email_code_max_per_hour: int = Field(default=5, ge=1)
    # Lifetime of a Telegram chat binding code (/start bind_<code>).
    channel_binding_ttl_s: int = Field(default=600, gt=0)
    super_admin_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    super_admin_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dev_login_enabled: bool = False
    service_principals: dict[str, ServicePrincipalConfig] = Field(default_factory=dict)

    # Notifications. The server paces sends (global rate, per-chat interval) for all
    # dispatchers together; the sender settings below are read by workers/dispatcher.
    notifications_global_rate: float = Field(default=30.0, gt=0, description="messages/s")
    notifications_per_chat_interval_s: float = Field(default=1.0, ge=0)
    notifications_max_attempts: int = Field(default=8, ge=1)
    notifications_backoff_base_s: float = Field(default=2.0, gt=0)
    notifications_backoff_cap_s: float = Field(default=600.0, gt=0)
    # How long a dispatcher holds a notification after its send time before it is re-leased.
    notifications_lease_s: float = Field(default=30.0, gt=0)
    # How far ahead of now the server hands out send slots in one lease.
    notifications_lease_ahead_s: float = Field(default=1.0, gt=0)
    # real: Telegram + SMTP; log: only ids are logged; auto: Telegram for bots with a token.
    notifications_sender: Literal["real", "log", "auto"] = "real"
    telegram_api_base: str = "https://api.telegram.org"
    telegram_api_local: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_from: str = "Switchboard <noreply@localhost>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # Read only by the dispatcher (workers/dispatcher/settings.py), which shares
    # configs/<env>.yaml: declared here so that the YAML may hold them (extra="forbid").
    # Stopgap until the YAML is split per process; a unit test keeps the two lists in step.
    smtp_ca_file: str = ""
    dispatcher_concurrency: int = Field(default=64, ge=1, le=500)
    dispatcher_report_interval_s: float = Field(default=0.2, ge=0)
    dispatcher_send_timeout_s: float = Field(default=20.0, gt=0)
    dispatcher_rpc_timeout_s: float = Field(default=10.0, gt=0)
    dispatcher_name: str = Field(default="", max_length=64, description="empty: host-pid")

    # Rooms.
    rooms_max_members: int = Field(default=500, ge=1, description="members per room, at most")
    rooms_max_message_length: int = Field(default=4000, ge=1, le=65_536)
    # Per user and room, on top of the `write` bucket (both off when rate_limit_enabled is false).
    rooms_message_rate_per_s: float = Field(default=5.0, gt=0)
    rooms_message_burst: int = Field(default=20, ge=1)
    rooms_call_max_participants: int = Field(default=4, ge=2, description="peer-to-peer limit")
    # Messages and stored events older than this are deleted by a periodic job; 0 keeps them.
    rooms_retention_days: int = Field(default=30, ge=0)
    rooms_retention_interval_s: float = Field(default=3600.0, gt=0)
    # Stored events each replica keeps per watched room to serve resumes without PostgreSQL.
    rooms_live_buffer_size: int = Field(default=1000, ge=1)
    # Idle streams get a heartbeat this often; it also paces presence refresh and DB catch-up.
    rooms_heartbeat_s: float = Field(default=15.0, gt=0)
    # A subscription not refreshed for this long counts as offline (a dead replica's ghosts).
    rooms_presence_ttl_s: float = Field(default=45.0, gt=0)
    stun_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_credential_ttl_s: int = Field(default=86_400, gt=0)
    # coturn's static-auth-secret (use-auth-secret); env only. Unset: GetIceServers gives STUN only.
    turn_secret: SecretStr | None = None

    # Booking (the barbershop; docs/booking.md). Times of day and dates are local to this IANA
    # zone; the slot grid step (and a slot's length when no service is given), in minutes.
    booking_time_zone: str = "Europe/Moscow"
    booking_slot_minutes: int = Field(default=60, ge=5, le=720)
    # Reminders to the client, minutes before the start (one notice per offset).
    booking_reminder_offsets_minutes: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1440, 120]
    )
    # The longest GetAvailability range, in days.
    booking_max_range_days: int = Field(default=62, ge=1, le=366)
    # How often past active bookings are marked completed.
    booking_completion_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("booking_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("booking_reminder_offsets_minutes", mode="before")
    @classmethod
    def _csv_offsets(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("booking_reminder_offsets_minutes")
    @classmethod
    def _positive_offsets(cls, value: list[int]) -> list[int]:
        if any(v <= 0 for v in value) or len(set(value)) != len(value):
            raise ValueError("offsets must be distinct positive minutes")
        return value

    @field_validator("stun_urls", "turn_urls", mode="before")
    @classmethod
    def _csv_urls(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("turn_secret", mode="before")
    @classmethod
    def _empty_turn_secret_is_unset(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    @model_validator(mode="after")
    def _presence_outlives_heartbeat(self) -> Settings:
        if self.rooms_presence_ttl_s <= self.rooms_heartbeat_s:
            raise ValueError("rooms_presence_ttl_s must be longer than rooms_heartbeat_s")
        return self

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

    @field_validator("login_bot_token", "smtp_password", mode="before")
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
        if self.turn_secret is not None:
            values.append(self.turn_secret.get_secret_value())
        if self.smtp_password is not None:
            values.append(self.smtp_password.get_secret_value())
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

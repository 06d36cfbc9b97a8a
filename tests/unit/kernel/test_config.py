from __future__ import annotations

from pathlib import Path

import pytest

from server import config
from server.config import ConfigError

BASE = {
    "SWITCHBOARD_PG_DSN": "postgresql://x@127.0.0.1/db",
    "SWITCHBOARD_REDIS_URL": "redis://127.0.0.1/0",
    "SWITCHBOARD_DATA_KEY": "A" * 43,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(__import__("os").environ):
        if key.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(key)
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SWITCHBOARD_CONFIG_DIR", str(tmp_path))
    return monkeypatch


def test_yaml_then_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "test.yaml").write_text("env: test\nhandshake_ttl_s: 99\nsession_ttl_s: 5\n")
    env.setenv("SWITCHBOARD_ENV", "test")
    env.setenv("SWITCHBOARD_SESSION_TTL_S", "7")
    env.setenv("SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS", "1, 2")
    settings = config.load()
    assert settings.handshake_ttl_s == 99
    assert settings.session_ttl_s == 7
    assert settings.super_admin_telegram_ids == [1, 2]


def test_missing_setting_is_one_clear_line(env: pytest.MonkeyPatch) -> None:
    env.delenv("SWITCHBOARD_PG_DSN")
    with pytest.raises(ConfigError) as caught:
        config.load()
    message = str(caught.value)
    assert "pg_dsn" in message
    assert "SWITCHBOARD_PG_DSN" in message
    assert "\n" not in message


def test_invalid_value_names_the_setting(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_SESSION_TTL_S", "-1")
    with pytest.raises(ConfigError, match="session_ttl_s"):
        config.load()


def test_dev_login_refused_outside_dev(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_ENV", "prod")
    env.setenv("SWITCHBOARD_DEV_LOGIN_ENABLED", "true")
    with pytest.raises(ConfigError, match="dev_login_enabled"):
        config.load()


def test_secret_in_yaml_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text("login_bot_token: '123:abc'\n")
    with pytest.raises(ConfigError, match="login_bot_token is a secret"):
        config.load()


def test_unknown_domain_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_DOMAINS", "identity,nope")
    with pytest.raises(ConfigError, match="domains"):
        config.load()


def test_service_tokens_come_from_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text("service_principals:\n  login-bot:\n    scopes: [a]\n")
    env.setenv("SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT", "tok-" + "x" * 20)
    settings = config.load()
    assert settings.service_tokens()["login-bot"].get_secret_value() == "tok-" + "x" * 20
    assert "tok-" + "x" * 20 in settings.secret_values()
    assert "tok-" not in repr(settings)


def test_empty_login_bot_token_is_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_LOGIN_BOT_TOKEN", "  ")
    assert config.load().login_bot_token is None


def test_short_service_token_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text("service_principals:\n  login-bot:\n    scopes: [a]\n")
    env.setenv("SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT", "short")
    with pytest.raises(ConfigError, match="SWITCHBOARD_SERVICE_TOKEN_LOGIN_BOT"):
        config.load()


def test_trusted_proxies_take_networks(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    assert config.load().trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    env.setenv("SWITCHBOARD_TRUSTED_PROXIES", "not-an-address")
    with pytest.raises(ConfigError, match="trusted_proxies"):
        config.load()

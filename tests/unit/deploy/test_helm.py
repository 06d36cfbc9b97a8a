"""deploy/helm/switchboard: linted and rendered by Helm itself, validated against Kubernetes schemas.

Helm is the real one: Helm v4's Go SDK (lint, template engine) through the helm-python-sdk
wheel (libhelm_c), no cluster needed. Every rendered object is validated, strictly (unknown
fields are errors), against the Kubernetes OpenAPI schemas of the oldest supported (1.27) and
the newest bundled release (kubernetes-validate). The ServiceMonitor (a CRD) is checked by
structure. The rendered config is loaded by server.config, the gateway's rendered environment
goes through the gateway entrypoint into `envoy --mode validate`.
Not checked: installing into a cluster (no cluster here), the hook ordering at run time.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.registry import BOTS as BOT_SPECS
from bots.runtime.app import BotApp
from bots.settings import BotsSettings
from server import config as server_config
from tests.unit.deploy import support
from tests.unit.deploy.dockerfile import parse, stage_env
from tests.unit.deploy.gateway_image import entrypoint_env, run_entrypoint
from tests.unit.deploy.workers import BOTS, DISPATCHER, WORKERS, variables
from workers.dispatcher.settings import DispatcherSettings, bot_tokens

RELEASE = "sb"
NAMESPACE = "switchboard"
SECRET = "switchboard-secrets"  # pragma: allowlist secret (a Secret's name)
KUBE_VERSIONS = ("1.27.0", "1.37.0")  # chart's kubeVersion floor; newest schemas bundled
BASE_VALUES: dict[str, Any] = {"secrets": {"existingSecret": SECRET}}
# Every optional branch switched on, so each template line is rendered and schema-checked.
FULL_VALUES: dict[str, Any] = {
    "secrets": {"existingSecret": SECRET},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccountName": "switchboard",
    "extraEnv": [{"name": "SWITCHBOARD_SUPER_ADMIN_TELEGRAM_IDS", "value": "1,2"}],
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    **{
        component: {
            "podAnnotations": {"example.com/a": "b"},
            "podLabels": {"example.com/team": "x"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {
                                    "matchLabels": {"app.kubernetes.io/component": component}
                                },
                            },
                        }
                    ]
                }
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": component}},
                }
            ],
        }
        for component in ("server", "gateway", "dispatcher", "bots")
    },
}
for _component in ("server", "gateway", "bots"):  # those with a Service
    FULL_VALUES[_component]["service"] = {"annotations": {"example.com/s": "t"}}
FULL_VALUES["gateway"]["corsOrigins"] = [
    "https://app.example.com",
    "regex:^https://.*\\.example\\.com$",
]
FULL_VALUES["config"] = {"telegram_api_base": "http://telegram-bot-api.example:8081"}
FULL_VALUES["dispatcher"]["extraEnv"] = [
    {"name": "SWITCHBOARD_DISPATCHER_CONCURRENCY", "value": "8"}
]
FULL_VALUES["bots"] |= {
    "enabled": True,
    "mode": "webhook",
    "replicas": 2,
    "webhook": {"url": "https://bots.example.com/webhook", "port": 8443},
    "extraEnv": [{"name": "SWITCHBOARD_BOT_THROTTLE_RATE", "value": "10"}],
}
BOTS_POLLING: dict[str, Any] = BASE_VALUES | {"bots": {"enabled": True}}


@pytest.fixture(scope="module")
def helm() -> Any:
    return support.tool_module("helm", "helm_python")


@pytest.fixture(scope="module")
def chart(helm: Any) -> Iterator[Any]:
    with helm.Chart.load(str(support.CHART)) as loaded:
        yield loaded


Objects = dict[tuple[str, str], dict[str, Any]]


def render(chart: Any, values: dict[str, Any]) -> Objects:
    """helm template: every object, parsed strictly, by (kind, name)."""
    manifests: dict[str, str] = chart.render(
        copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    objects: Objects = {}
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        for doc in support.load_all_yaml(text):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} rendered twice"
            objects[key] = doc
    return objects


@pytest.fixture(scope="module")
def objects(chart: Any) -> Objects:
    return render(chart, BASE_VALUES)


@pytest.fixture(scope="module")
def full(chart: Any) -> Objects:
    return render(chart, FULL_VALUES)


@pytest.fixture(scope="module")
def polling(chart: Any) -> Objects:
    """The defaults with the bots on (polling mode)."""
    return render(chart, BOTS_POLLING)


def name(component: str) -> str:
    return f"{RELEASE}-switchboard-{component}"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(obj)["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_of(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(obj).get("env", []) if "value" in e}


# --- helm itself ---------------------------------------------------------------------------------
def test_helm_lint_is_clean(helm: Any) -> None:
    for values in (BASE_VALUES, FULL_VALUES):
        report = helm.lint(str(support.CHART), copy.deepcopy(values), strict=True)
        assert report["errors"] == []
        problems = [m for m in report["messages"] if m["severity"] >= 2]  # warning, error
        assert problems == []


def test_chart_metadata() -> None:
    meta = support.load_yaml((support.CHART / "Chart.yaml").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == pyproject["project"]["version"]  # the default image tag
    assert meta["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"


def test_rendered_objects(objects: Objects, full: Objects) -> None:
    expected = {
        ("ConfigMap", name("config")),
        ("Deployment", name("server")),
        ("Deployment", name("gateway")),
        ("Deployment", name("dispatcher")),
        ("Service", name("server")),
        ("Service", name("server-headless")),
        ("Service", name("gateway")),
        ("Job", name("migrate")),
        ("PodDisruptionBudget", name("server")),
        ("PodDisruptionBudget", name("gateway")),
    }
    assert set(objects) == expected
    assert set(full) == expected | {
        ("ServiceMonitor", name("server")),
        ("Deployment", name("bots")),  # webhook mode: with its Service
        ("Service", name("bots")),
    }
    assert not [key for key in full if key[0] == "Secret"]  # secrets only by reference


def test_optional_parts_can_be_switched_off(chart: Any) -> None:
    values = BASE_VALUES | {
        "gateway": {"enabled": False},
        "migrations": {"enabled": False},
        "server": {"pdb": {"enabled": False}},
        "dispatcher": {"enabled": False},
    }
    kinds = {key[0] for key in render(chart, values)}
    assert kinds == {"ConfigMap", "Deployment", "Service"}


def test_manifests_are_valid_kubernetes_objects(
    objects: Objects, full: Objects, polling: Objects
) -> None:
    validate = support.tool_module("kubernetes schemas", "kubernetes_validate")
    checked, errors = 0, []
    for rendered in (objects, full, polling):
        for (kind, obj_name), obj in rendered.items():
            if kind == "ServiceMonitor":
                continue  # a CRD: no schema bundled (checked in test_service_monitor)
            for version in KUBE_VERSIONS:
                try:
                    validate.validate(obj, version, strict=True)
                except validate.ValidationError as exc:
                    where = "/".join(str(p) for p in exc.absolute_path)
                    errors.append(f"{kind}/{obj_name} on {version} at {where}: {exc.message}")
                checked += 1
    assert errors == []
    # all but the CRD
    assert checked == len(KUBE_VERSIONS) * (len(objects) + len(full) - 1 + len(polling))


# --- values ----------------------------------------------------------------------------------------
def _value_paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from _value_paths(child, (*prefix, str(key)))
    else:
        yield prefix


def test_templates_use_exactly_the_defined_values() -> None:
    values = support.load_yaml((support.CHART / "values.yaml").read_text(encoding="utf-8"))
    referenced: set[tuple[str, ...]] = set()
    for template in (support.CHART / "templates").iterdir():
        text = template.read_text(encoding="utf-8")
        for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            path = tuple(match.group(1).strip(".").split("."))
            node: Any = values
            for part in path:
                assert isinstance(node, dict), f"{template.name}: .Values.{'.'.join(path)}"
                assert part in node, (
                    f"{template.name}: .Values.{'.'.join(path)} is not in values.yaml"
                )
                node = node[part]
            referenced.add(path)
    unused = [
        ".".join(path)
        for path in _value_paths(values)
        if not any(path[: len(ref)] == ref for ref in referenced)
    ]
    assert unused == [], "values.yaml keys no template reads"


# --- pods ------------------------------------------------------------------------------------------
def _pods(rendered: Objects) -> dict[str, dict[str, Any]]:
    return {key[1]: obj for key, obj in rendered.items() if key[0] in ("Deployment", "Job")}


def test_pods_run_non_root_read_only_without_capabilities(full: Objects, polling: Objects) -> None:
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    image_user = stages["server"].last("USER").args  # "uid:gid", same in the gateway stage
    pods = _pods(full) | {f"{k} (polling)": v for k, v in _pods(polling).items()}
    assert {name(c) for c in ("server", "gateway", "migrate", "dispatcher", "bots")} <= set(pods)
    for pod_name, obj in pods.items():
        spec = pod_spec(obj)
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, pod_name
        assert f"{security['runAsUser']}:{security['runAsGroup']}" == image_user, pod_name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False, pod_name
        box = container(obj)
        assert box["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, pod_name
        assert box["resources"]["requests"], pod_name
        assert box["resources"]["limits"], pod_name
        # A read-only root needs a writable /tmp (the gateway renders its config there).
        mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], pod_name


def test_server_deployment(objects: Objects) -> None:
    server = objects[("Deployment", name("server"))]
    box = container(server)
    values = support.load_yaml((support.CHART / "values.yaml").read_text(encoding="utf-8"))
    assert box["image"] == "switchboard-server:0.1.0"
    assert box["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    grpc_port = int(values["config"]["grpc_addr"].rsplit(":", 1)[1])
    metrics_port = int(values["config"]["metrics_addr"].rsplit(":", 1)[1])
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert box[probe]["grpc"] == {"port": grpc_port, "service": ""}, probe
    assert box["envFrom"] == [{"secretRef": {"name": SECRET}}]
    strategy = server["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0
    # Longer than the server's own shutdown grace period.
    assert pod_spec(server)["terminationGracePeriodSeconds"] > 10
    assert "checksum/config" in server["spec"]["template"]["metadata"]["annotations"]


def test_config_change_rolls_the_server_and_the_dispatcher(chart: Any, objects: Objects) -> None:
    changed = render(chart, BASE_VALUES | {"config": {"log_level": "debug"}})
    for component in ("server", "dispatcher"):  # both read the config file
        before = objects[("Deployment", name(component))]["spec"]["template"]["metadata"]
        after = changed[("Deployment", name(component))]["spec"]["template"]["metadata"]
        assert before["annotations"]["checksum/config"] != after["annotations"]["checksum/config"]


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(objects: Objects) -> None:
    job = objects[("Job", name("migrate"))]
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    box = container(job)
    assert box["args"] == ["migrate"]
    assert box["image"] == container(objects[("Deployment", name("server"))])["image"]
    assert box["envFrom"] == [{"secretRef": {"name": SECRET}}]
    # A hook runs before the release's other objects exist: it may use none of them.
    spec = pod_spec(job)
    assert "serviceAccountName" not in spec
    assert all("configMap" not in v for v in spec["volumes"])


def test_existing_secret_is_required(chart: Any, helm: Any) -> None:
    with pytest.raises(helm.HelmError, match=r"secrets\.existingSecret is required"):
        render(chart, {})


def test_secrets_are_refused_in_config(chart: Any, helm: Any) -> None:
    for key in ("login_bot_token", "pg_dsn"):
        values = BASE_VALUES | {"config": {key: "x"}}
        with pytest.raises(helm.HelmError, match=f"config.{key} must not be in values"):
            render(chart, values)
    with pytest.raises(helm.HelmError, match="dev_login_enabled"):
        render(chart, BASE_VALUES | {"config": {"dev_login_enabled": True}})


def test_the_config_map_is_a_config_the_server_loads(
    objects: Objects, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_map = objects[("ConfigMap", name("config"))]
    server = objects[("Deployment", name("server"))]
    env = env_of(server)
    mounts = {m["name"]: m["mountPath"] for m in container(server)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(server)["volumes"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == config_map["metadata"]["name"]
    assert env["SWITCHBOARD_CONFIG_DIR"] == mounts[config_volume]
    assert set(config_map["data"]) == {f"{env['SWITCHBOARD_ENV']}.yaml"}

    # The defaults are configs/prod.yaml.
    text = config_map["data"][f"{env['SWITCHBOARD_ENV']}.yaml"]
    prod = (support.REPO / "configs" / "prod.yaml").read_text(encoding="utf-8")
    assert support.load_yaml(text) == support.load_yaml(prod)

    # The server loads it, with the keys the Secret provides.
    (tmp_path / f"{env['SWITCHBOARD_ENV']}.yaml").write_text(text, encoding="utf-8")
    for key in [k for k in __import__("os").environ if k.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(key)
    for key, value in (
        env
        | {
            "SWITCHBOARD_CONFIG_DIR": str(tmp_path),
            "SWITCHBOARD_PG_DSN": "postgresql://switchboard:x@db:5432/switchboard",
            "SWITCHBOARD_REDIS_URL": "redis://redis:6379/0",
            "SWITCHBOARD_DATA_KEY": "B" * 43,
        }
    ).items():
        monkeypatch.setenv(key, value)
    settings = server_config.load()
    assert settings.env == "prod"
    ports = {p["name"]: p["containerPort"] for p in container(server)["ports"]}
    assert settings.grpc_addr == f"0.0.0.0:{ports['grpc']}"
    assert settings.metrics_addr == f"0.0.0.0:{ports['metrics']}"


# --- services, selectors, gateway ------------------------------------------------------------------
def _selects(selector: dict[str, str], obj: dict[str, Any]) -> bool:
    labels = obj["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_and_budgets_select_the_right_pods(full: Objects) -> None:
    server = full[("Deployment", name("server"))]
    gateway = full[("Deployment", name("gateway"))]
    deployments = {key[1]: obj for key, obj in full.items() if key[0] == "Deployment"}
    targets = {
        name("server"): name("server"),
        name("server-headless"): name("server"),
        name("gateway"): name("gateway"),
        name("bots"): name("bots"),
    }
    assert set(targets) == {key[1] for key in full if key[0] == "Service"}
    for service_name, target_name in targets.items():
        service = full[("Service", service_name)]
        target = deployments[target_name]
        selected = {n for n, d in deployments.items() if _selects(service["spec"]["selector"], d)}
        assert selected == {target_name}, service_name
        ports = {p["name"] for p in container(target)["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service_name
    for component, target in (("server", server), ("gateway", gateway)):
        budget = full[("PodDisruptionBudget", name(component))]
        assert _selects(budget["spec"]["selector"]["matchLabels"], target)
        deployment_selector = target["spec"]["selector"]["matchLabels"]
        assert _selects(deployment_selector, target)
    assert full[("Service", name("server-headless"))]["spec"]["clusterIP"] == "None"


def test_service_monitor(full: Objects) -> None:
    monitor = full[("ServiceMonitor", name("server"))]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = full[("Service", name("server"))]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_gateway_deployment(full: Objects) -> None:
    gateway = full[("Deployment", name("gateway"))]
    box = container(gateway)
    env = env_of(gateway)
    assert box["image"] == "switchboard-gateway:0.1.0"
    assert box["args"] == ["run"]
    headless = full[("Service", name("server-headless"))]
    assert (
        env["GATEWAY_UPSTREAM_HOST"] == f"{name('server-headless')}.{NAMESPACE}.svc.cluster.local"
    )
    assert int(env["GATEWAY_UPSTREAM_PORT"]) == headless["spec"]["ports"][0]["port"]
    assert {p["name"]: p["containerPort"] for p in box["ports"]} == {
        "http": int(env["GATEWAY_LISTEN_PORT"])
    }
    assert env["GATEWAY_CORS_ORIGINS"] == ",".join(FULL_VALUES["gateway"]["corsOrigins"])
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    image_check = stages["gateway"].last("HEALTHCHECK").healthcheck_command
    for probe in ("readinessProbe", "livenessProbe"):
        assert box[probe]["exec"]["command"] == image_check, probe


def test_helm_gateway_parameters_give_a_config_envoy_accepts(
    full: Objects, descriptor_image: Path, openapi_json: Path, tmp_path: Path
) -> None:
    out = tmp_path / "envoy.yaml"
    env = entrypoint_env(
        env_of(full[("Deployment", name("gateway"))]),
        descriptor=descriptor_image,
        openapi=openapi_json,
        out=out,
    )
    result = run_entrypoint("check", env)
    assert result.returncode == 0, result.stdout + result.stderr
    config = support.load_yaml(out.read_text(encoding="utf-8"))
    cluster = config["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"].startswith(name("server-headless"))
    # STRICT_DNS resolves every ready server pod behind the headless Service.
    assert cluster["type"] == "STRICT_DNS"


# --- the dispatcher and the bots -------------------------------------------------------------------
def secret_refs(obj: dict[str, Any]) -> dict[str, bool]:
    """Variables taken from the Secret -> optional?; each by its own key of the one Secret."""
    refs = {}
    for entry in container(obj).get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == SECRET, entry["name"]
            assert ref["key"] == entry["name"], entry["name"]
            refs[entry["name"]] = ref["optional"]
    return refs


def _server_address(rendered: Objects) -> str:
    service = rendered[("Service", name("server"))]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    return f"{name('server')}.{NAMESPACE}.svc.cluster.local:{port}"


def _image_env() -> dict[str, str]:
    """The server image's SWITCHBOARD_* ENV, under every pod's own environment."""
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    return {k: v for k, v in stage_env(stages["server"]).items() if k.startswith("SWITCHBOARD_")}


def _environ(env: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return clean | _image_env() | env


def test_the_telegram_bots_are_the_registry(objects: Objects) -> None:
    values = support.load_yaml((support.CHART / "values.yaml").read_text(encoding="utf-8"))
    assert [(b["name"], b["principal"]) for b in values["telegramBots"]] == [
        (spec.name, spec.principal) for spec in BOT_SPECS
    ]
    for spec in BOT_SPECS:
        assert spec.principal in values["config"]["service_principals"]
    # Every secret variable the workers read is documented with the Secret's keys.
    text = (support.CHART / "values.yaml").read_text(encoding="utf-8")
    for worker in WORKERS:
        for variable, secret in variables(worker.settings).items():
            if secret:
                assert variable in text, variable


def test_dispatcher_deployment(
    objects: Objects, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dispatcher = objects[("Deployment", name("dispatcher"))]
    box = container(dispatcher)
    server = container(objects[("Deployment", name("server"))])
    assert box["image"] == server["image"]
    assert box["command"] == DISPATCHER.command
    assert DISPATCHER.main_file.is_file()
    assert "args" not in box  # not the image's CMD ("serve")
    assert dispatcher["spec"]["replicas"] >= 2  # several dispatchers are safe
    assert dispatcher["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod_spec(dispatcher)["terminationGracePeriodSeconds"] > (
        DispatcherSettings.model_fields["dispatcher_send_timeout_s"].default
    )
    # Only its own keys of the Secret: not the database, Redis or the data key.
    assert "envFrom" not in box
    assert secret_refs(dispatcher) == {
        "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": False,
        "SWITCHBOARD_SMTP_PASSWORD": True,
        **{spec.token_env: True for spec in BOT_SPECS},
    }
    # The same config file as the server (sender settings), mounted the same way.
    config_map = objects[("ConfigMap", name("config"))]
    volumes = {v["name"]: v for v in pod_spec(dispatcher)["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == config_map["metadata"]["name"]
    env = env_of(dispatcher)
    assert env["SWITCHBOARD_CONFIG_DIR"] == mounts[config_volume]
    assert env["SWITCHBOARD_SERVER_ADDR"] == _server_address(objects)

    # The dispatcher's settings load from that environment, the mounted file and the Secret's keys
    # (over the image's ENV, whose SWITCHBOARD_GRPC_ADDR is the server's listen address).
    (tmp_path / f"{env['SWITCHBOARD_ENV']}.yaml").write_text(
        config_map["data"][f"{env['SWITCHBOARD_ENV']}.yaml"], encoding="utf-8"
    )
    secrets = {key: f"value-of-{key}" for key in secret_refs(dispatcher)}
    monkeypatch.setattr(
        os, "environ", _environ(env | secrets | {"SWITCHBOARD_CONFIG_DIR": str(tmp_path)})
    )
    settings = DispatcherSettings()
    assert settings.env == "prod"
    assert settings.server_addr == _server_address(objects)
    assert settings.service_token_dispatcher is not None
    assert set(bot_tokens(os.environ)) == {spec.name for spec in BOT_SPECS}


def test_dispatcher_takes_sender_settings_from_config_and_extra_env(full: Objects) -> None:
    dispatcher = full[("Deployment", name("dispatcher"))]
    assert env_of(dispatcher)["SWITCHBOARD_DISPATCHER_CONCURRENCY"] == "8"
    config = support.load_yaml(full[("ConfigMap", name("config"))]["data"]["prod.yaml"])
    assert config["telegram_api_base"] == FULL_VALUES["config"]["telegram_api_base"]


def test_bots_are_off_by_default(objects: Objects) -> None:
    assert not [key for key in objects if key[1] == name("bots")]


def test_bots_polling_deployment(polling: Objects, monkeypatch: pytest.MonkeyPatch) -> None:
    bots = polling[("Deployment", name("bots"))]
    box = container(bots)
    assert box["command"] == BOTS.command
    assert BOTS.main_file.is_file()
    assert "args" not in box
    # One getUpdates consumer per token: one pod, and never two during an update.
    assert bots["spec"]["replicas"] == 1
    assert bots["spec"]["strategy"] == {"type": "Recreate"}
    assert "ports" not in box
    assert ("Service", name("bots")) not in polling
    assert "envFrom" not in box
    refs = secret_refs(bots)
    assert refs == {
        **{spec.token_env: False for spec in BOT_SPECS},
        **{spec.service_token_env: False for spec in BOT_SPECS},
    }
    env = env_of(bots)
    assert env["SWITCHBOARD_SERVER_ADDR"] == _server_address(polling)
    secrets = {key: f"value-of-{key}" for key in refs}
    environ = _environ(env | secrets)
    monkeypatch.setattr(os, "environ", environ)
    settings = BotsSettings()
    assert settings.bot_mode == "polling"
    assert settings.server_addr == _server_address(polling)
    assert BotApp.enabled(BOT_SPECS, environ) == list(BOT_SPECS)


def test_bots_webhook_deployment_and_service(
    full: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    bots = full[("Deployment", name("bots"))]
    box = container(bots)
    assert bots["spec"]["replicas"] == 2  # webhooks: any number of pods
    assert bots["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    refs = secret_refs(bots)
    assert refs["SWITCHBOARD_BOT_WEBHOOK_SECRET"] is False
    env = env_of(bots)
    assert env["SWITCHBOARD_TELEGRAM_API_BASE"] == FULL_VALUES["config"]["telegram_api_base"]
    assert env["SWITCHBOARD_BOT_THROTTLE_RATE"] == "10"
    secrets = {key: "value-of-secret" for key in refs}
    monkeypatch.setattr(os, "environ", _environ(env | secrets))
    settings = BotsSettings()
    assert settings.bot_mode == "webhook"
    assert settings.bot_webhook_url == FULL_VALUES["bots"]["webhook"]["url"]
    assert settings.telegram_api_base == FULL_VALUES["config"]["telegram_api_base"]
    host, port = settings.webhook_listen()
    assert host == "0.0.0.0"  # noqa: S104 - inside the pod
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    assert ports == {"webhook": port}
    assert box["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    service = full[("Service", name("bots"))]
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("webhook", "webhook")
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bots": {"enabled": True, "replicas": 2}}, "replicas must be 1 in polling mode"),
        ({"bots": {"enabled": True, "mode": "webhook"}}, r"bots\.webhook\.url is required"),
        ({"bots": {"enabled": True, "mode": "push"}}, "bots.mode must be polling or webhook"),
        (
            {"telegramBots": [{"name": "shop", "principal": "shop-bot"}]},
            "config.service_principals does not declare",
        ),
        (
            {
                "bots": {"enabled": True},
                "telegramBots": [{"name": "Shop", "principal": "login-bot"}],
            },
            "bot name",
        ),
        ({"bots": {"enabled": True}, "telegramBots": []}, "telegramBots is empty"),
    ],
)
def test_bad_bot_values_are_refused(
    chart: Any, helm: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(chart, BASE_VALUES | values)

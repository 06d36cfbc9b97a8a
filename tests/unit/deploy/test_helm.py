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
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server import config as server_config
from tests.unit.deploy import support
from tests.unit.deploy.dockerfile import parse
from tests.unit.deploy.gateway_image import entrypoint_env, run_entrypoint

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
            "service": {"annotations": {"example.com/s": "t"}},
        }
        for component in ("server", "gateway")
    },
}
FULL_VALUES["gateway"]["corsOrigins"] = [
    "https://app.example.com",
    "regex:^https://.*\\.example\\.com$",
]


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
        ("Service", name("server")),
        ("Service", name("server-headless")),
        ("Service", name("gateway")),
        ("Job", name("migrate")),
        ("PodDisruptionBudget", name("server")),
        ("PodDisruptionBudget", name("gateway")),
    }
    assert set(objects) == expected
    assert set(full) == expected | {("ServiceMonitor", name("server"))}
    assert not [key for key in full if key[0] == "Secret"]  # secrets only by reference


def test_optional_parts_can_be_switched_off(chart: Any) -> None:
    values = BASE_VALUES | {
        "gateway": {"enabled": False},
        "migrations": {"enabled": False},
        "server": {"pdb": {"enabled": False}},
    }
    kinds = {key[0] for key in render(chart, values)}
    assert kinds == {"ConfigMap", "Deployment", "Service"}


def test_manifests_are_valid_kubernetes_objects(objects: Objects, full: Objects) -> None:
    validate = support.tool_module("kubernetes schemas", "kubernetes_validate")
    checked, errors = 0, []
    for rendered in (objects, full):
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
    assert checked == len(KUBE_VERSIONS) * (len(objects) + len(full) - 1)  # all but the CRD


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


def test_pods_run_non_root_read_only_without_capabilities(full: Objects) -> None:
    stages = {s.name: s for s in parse(support.DOCKERFILE)}
    image_user = stages["server"].last("USER").args  # "uid:gid", same in the gateway stage
    for pod_name, obj in _pods(full).items():
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


def test_config_change_rolls_the_server(chart: Any, objects: Objects) -> None:
    before = objects[("Deployment", name("server"))]["spec"]["template"]["metadata"]
    changed = render(chart, BASE_VALUES | {"config": {"log_level": "debug"}})
    after = changed[("Deployment", name("server"))]["spec"]["template"]["metadata"]
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
    targets = {
        name("server"): server,
        name("server-headless"): server,
        name("gateway"): gateway,
    }
    for service_name, target in targets.items():
        service = full[("Service", service_name)]
        assert _selects(service["spec"]["selector"], target), service_name
        other = gateway if target is server else server
        assert not _selects(service["spec"]["selector"], other), service_name
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

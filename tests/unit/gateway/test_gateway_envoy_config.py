"""Rendering gateway/envoy.yaml.tmpl: the YAML parses, carries the contract, and Envoy accepts it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.envoy import TEMPLATE_PATH, EnvoyError, render_config, validate_config
from server.kernel.methods import contract_services

AUTH = "switchboard.identity.v1.AuthService"
ADMIN = "switchboard.identity.v1.AdminService"


def render(descriptor_image: Path, tmp_path: Path, **overrides: Any) -> tuple[Path, dict[str, Any]]:
    openapi = tmp_path / "openapi.json"
    openapi.write_text("{}")
    options: dict[str, Any] = {
        "listen_host": "0.0.0.0",  # noqa: S104 - rendered text only
        "listen_port": 8080,
        "upstream_host": "server",
        "upstream_port": 50051,
        "descriptor_path": descriptor_image,
        "openapi_path": openapi,
        "admin_port": 9901,
        "out_path": tmp_path / "out" / "envoy.yaml",
    }
    options.update(overrides)
    path = render_config(**options)
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return path, config


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    manager: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        f["typed_config"] for f in hcm(config)["http_filters"] if f["name"] == name
    )
    return found


def routes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    vhost = hcm(config)["route_config"]["virtual_hosts"][0]
    return {route["name"]: route for route in vhost["routes"]}


def cors_policy(config: dict[str, Any]) -> dict[str, Any]:
    vhost = hcm(config)["route_config"]["virtual_hosts"][0]
    policy: dict[str, Any] = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    return policy


def test_rendered_config_is_accepted_by_envoy(descriptor_image: Path, tmp_path: Path) -> None:
    path, config = render(descriptor_image, tmp_path)

    validate_config(path)  # `envoy --mode validate`: the real schema, the real descriptor
    # The validator really checks: the same config with a cluster the route points to renamed
    # away is refused, with Envoy's own explanation.
    broken = copy.deepcopy(config)
    broken["static_resources"]["clusters"][0]["name"] = "no-such-cluster"
    broken_path = tmp_path / "broken.yaml"
    broken_path.write_text(yaml.safe_dump(broken))
    with pytest.raises(EnvoyError) as caught:
        validate_config(broken_path)
    assert str(broken_path) in str(caught.value)


def test_listener_admin_and_upstream(descriptor_image: Path, tmp_path: Path) -> None:
    _, config = render(descriptor_image, tmp_path)

    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}  # noqa: S104
    cluster = config["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "server", "port_value": 50051}
    protocol = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in protocol["explicit_http_config"]


def test_filter_chain_and_transcoder_options(descriptor_image: Path, tmp_path: Path) -> None:
    _, config = render(descriptor_image, tmp_path)
    names = [f["name"] for f in hcm(config)["http_filters"]]
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")

    assert names == [
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_web",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]
    # Every switchboard.* service of the generated contracts, sorted.
    assert transcoder["services"] == [s.full_name for s in contract_services()]
    assert {ADMIN, AUTH} <= set(transcoder["services"])
    assert transcoder["proto_descriptor"] == str(descriptor_image.resolve())
    assert transcoder["auto_mapping"] is False
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["print_options"] == {
        "add_whitespace": False,
        "preserve_proto_field_names": True,
        "always_print_primitive_fields": True,
        "always_print_enums_as_ints": False,
        "stream_newline_delimited": True,
    }
    assert transcoder["request_validation_options"] == {
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": True,
        "reject_binding_body_field_collisions": True,
    }


def test_routes_timeouts_and_openapi(descriptor_image: Path, tmp_path: Path) -> None:
    _, config = render(descriptor_image, tmp_path, unary_timeout=12, stream_idle_timeout=45.5)
    found = routes(config)

    assert list(found) == ["openapi", "grpc_streaming", "grpc"]
    streaming_regex = found["grpc_streaming"]["match"]["safe_regex"]["regex"]
    assert re.fullmatch(streaming_regex, f"/{AUTH}/WaitTelegramLogin")
    assert not re.fullmatch(streaming_regex, f"/{AUTH}/GetMe")
    assert found["grpc_streaming"]["route"]["timeout"] == "0s"
    assert found["grpc_streaming"]["route"]["idle_timeout"] == "45.5s"
    assert found["grpc"]["route"]["timeout"] == "12s"

    openapi = found["openapi"]
    assert openapi["match"]["path"] == "/openapi.json"
    assert openapi["direct_response"]["body"]["filename"] == str(tmp_path / "openapi.json")
    content_type = openapi["response_headers_to_add"][0]["header"]
    assert content_type == {"key": "content-type", "value": "application/json"}
    limit = hcm(config)["route_config"]["max_direct_response_body_size_bytes"]
    assert limit >= 4 * 1024 * 1024


def test_direct_response_limit_grows_with_the_document(
    descriptor_image: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.json"
    big.write_text(" " * (5 * 1024 * 1024))
    _, config = render(descriptor_image, tmp_path, openapi_path=big)

    assert hcm(config)["route_config"]["max_direct_response_body_size_bytes"] >= big.stat().st_size


def test_client_address_and_request_id(descriptor_image: Path, tmp_path: Path) -> None:
    _, config = render(descriptor_image, tmp_path, xff_num_trusted_hops=1)
    manager = hcm(config)

    assert manager["use_remote_address"] is True
    assert manager["xff_num_trusted_hops"] == 1
    assert manager["preserve_external_request_id"] is True
    assert manager["always_set_request_id_in_response"] is True


@pytest.mark.parametrize(
    ("origins", "allowed", "denied"),
    [
        (None, ["http://localhost:5173", "http://127.0.0.1:8000"], ["https://evil.example"]),
        (["https://app.example.com/"], ["https://app.example.com"], ["http://localhost:5173"]),
        (["*"], ["https://anything.example"], []),
        ([r"regex:^https://[a-z]+\.example\.com$"], ["https://x.example.com"], ["https://x.io"]),
    ],
)
def test_cors_origins(
    descriptor_image: Path,
    tmp_path: Path,
    origins: list[str] | None,
    allowed: list[str],
    denied: list[str],
) -> None:
    _, config = render(descriptor_image, tmp_path, cors_origins=origins)
    policy = cors_policy(config)

    def matches(origin: str) -> bool:
        for matcher in policy["allow_origin_string_match"]:
            if "exact" in matcher and matcher["exact"] == origin:
                return True
            if "safe_regex" in matcher and re.fullmatch(matcher["safe_regex"]["regex"], origin):
                return True
        return False

    assert all(matches(origin) for origin in allowed)
    assert not any(matches(origin) for origin in denied)
    exposed = {h.strip() for h in policy["expose_headers"].split(",")}
    assert exposed == {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"}
    assert policy["allow_credentials"] is False


def test_explicit_services(descriptor_image: Path, tmp_path: Path) -> None:
    _, config = render(descriptor_image, tmp_path, services=[ADMIN])
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")

    assert transcoder["services"] == [ADMIN]
    # No streaming method in AdminService: the streaming route matches nothing.
    regex = routes(config)["grpc_streaming"]["match"]["safe_regex"]["regex"]
    assert not re.fullmatch(regex, f"/{AUTH}/WaitTelegramLogin")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"listen_port": 0}, "invalid port"),
        ({"admin_port": 70000}, "invalid port"),
        ({"services": ["switchboard.nope.v1.Nope"]}, "unknown services"),
        ({"xff_num_trusted_hops": -1}, "xff_num_trusted_hops"),
        ({"unary_timeout": 0}, "timeouts"),
    ],
)
def test_invalid_arguments(
    descriptor_image: Path, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render(descriptor_image, tmp_path, **overrides)


def test_template_placeholders_are_all_filled(descriptor_image: Path, tmp_path: Path) -> None:
    path, _ = render(descriptor_image, tmp_path)
    placeholders = set(re.findall(r"\$([a-z_]+)", TEMPLATE_PATH.read_text()))

    assert placeholders  # the template is parameterised...
    assert not re.search(r"\$[a-z_]+", path.read_text())  # ...and fully rendered

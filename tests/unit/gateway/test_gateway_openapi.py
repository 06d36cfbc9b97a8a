"""OpenAPI generation from the descriptor image: the identity contract and a synthetic one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2

from gateway.descriptors import Image, load_image
from gateway.openapi import build_openapi, dumps, main, write_openapi
from server.kernel.methods import contract_services

REPO_ROOT = Path(__file__).resolve().parents[3]
PKG = "switchboard.identity.v1"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@pytest.fixture(scope="module")
def doc(image: Image) -> dict[str, Any]:
    return build_openapi(image, version="test")


def schemas(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["components"]["schemas"]
    return result


def params(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation["parameters"] if "name" in p}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# --- identity contract ---------------------------------------------------------------------------
def test_every_http_rule_becomes_an_operation(doc: dict[str, Any]) -> None:
    operations = {(path, verb) for path, item in doc["paths"].items() for verb in item}

    assert doc["openapi"].startswith("3.1")
    # Every RPC of every contract declares REST, and every binding becomes one operation.
    methods = [m for s in contract_services() for m in s.methods]
    rules = [m.GetOptions().Extensions[annotations_pb2.http] for m in methods]
    assert all(m.GetOptions().HasExtension(annotations_pb2.http) for m in methods)
    assert len(operations) == sum(1 + len(rule.additional_bindings) for rule in rules)
    # The identity contract's paths, as the seed names them.
    assert operations >= {
        ("/v1/auth/telegram/login", "post"),
        ("/v1/auth/telegram/handshakes", "post"),
        ("/v1/auth/telegram/handshakes:wait", "post"),
        ("/v1/auth/telegram/handshakes/{code}:confirm", "post"),
        ("/v1/auth/dev/login", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/auth/me", "get"),
        ("/v1/admin/users", "get"),
        ("/v1/admin/users/{user_id}/promote", "post"),
        ("/v1/admin/users/{user_id}", "delete"),
        ("/v1/admin/audit-events", "get"),
    }
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "identity.v1.AuthService.GetMe" in ids
    assert [tag["name"] for tag in doc["tags"]] == [
        s.full_name.removeprefix("switchboard.") for s in contract_services()
    ]


def test_get_me_is_authenticated_with_access_policy(doc: dict[str, Any]) -> None:
    get_me = doc["paths"]["/v1/auth/me"]["get"]

    assert get_me["security"] == [{"bearer": []}]
    assert get_me["x-switchboard-access"] == {
        "allow": [{"authenticated": True}],
        "rate_class": "RATE_CLASS_READ",
    }
    assert get_me["x-switchboard-grpc-method"] == f"{PKG}.AuthService/GetMe"
    assert get_me["summary"] == "The calling user, with their role."
    assert "requestBody" not in get_me
    assert params(get_me) == {}  # GetMeRequest has no fields: no query parameters
    assert get_me["responses"]["200"]["content"]["application/json"]["schema"] == ref(
        f"{PKG}.GetMeResponse"
    )
    assert {"400", "401", "403", "429", "503", "default"} <= set(get_me["responses"])
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_public_methods_have_empty_security(doc: dict[str, Any]) -> None:
    login = doc["paths"]["/v1/auth/telegram/login"]["post"]

    assert login["security"] == []
    assert login["x-switchboard-access"]["allow"] == [{"public": True}]
    assert "401" not in login["responses"]
    body = login["requestBody"]
    assert body["required"] is True  # the message has required fields
    assert body["content"]["application/json"]["schema"] == ref(
        f"{PKG}.LoginWithTelegramWidgetRequest"
    )


def test_query_parameters_for_get(doc: dict[str, Any]) -> None:
    list_users = doc["paths"]["/v1/admin/users"]["get"]
    found = params(list_users)

    assert set(found) == {"page_size", "page_token"}
    assert found["page_size"]["in"] == "query"
    assert found["page_size"]["schema"] == {
        "type": "integer",
        "format": "int32",
        "minimum": 0,
        "maximum": 200,
        "x-switchboard-field": {"gte": "0", "lte": "200"},
    }
    assert found["page_size"]["description"] == "At most 200; 0 means 50."
    assert found["page_token"]["schema"]["maxLength"] == 512
    assert {"$ref": "#/components/parameters/RequestId"} in list_users["parameters"]
    assert list_users["x-switchboard-access"]["allow"] == [
        {"role": "ROLE_ADMIN"},
        {"role": "ROLE_SUPER_ADMIN"},
    ]
    audit = params(doc["paths"]["/v1/admin/audit-events"]["get"])
    assert set(audit) == {"page_size", "page_token", "action"}


def test_path_parameters_and_body_without_them(doc: dict[str, Any]) -> None:
    promote = doc["paths"]["/v1/admin/users/{user_id}/promote"]["post"]
    user_id = params(promote)["user_id"]

    assert user_id["in"] == "path"
    assert user_id["required"] is True
    assert user_id["schema"]["format"] == "uuid"
    body = promote["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "object"
    assert body["properties"] == {}  # user_id comes from the path
    assert "404" in promote["responses"]

    delete = doc["paths"]["/v1/admin/users/{user_id}"]["delete"]
    assert set(params(delete)) == {"user_id"}
    assert "requestBody" not in delete

    confirm = doc["paths"]["/v1/auth/telegram/handshakes/{code}:confirm"]["post"]
    assert params(confirm)["code"]["schema"]["pattern"] == "^[A-Za-z0-9_-]{8,64}$"
    confirm_body = confirm["requestBody"]["content"]["application/json"]["schema"]
    assert set(confirm_body["properties"]) == {"display_name", "username"}
    assert confirm["x-switchboard-access"]["allow"] == [{"service_scope": "identity.login.confirm"}]


def test_server_streaming_is_ndjson(doc: dict[str, Any]) -> None:
    wait = doc["paths"]["/v1/auth/telegram/handshakes:wait"]["post"]
    ok = wait["responses"]["200"]

    assert list(ok["content"]) == ["application/x-ndjson"]
    assert ok["content"]["application/x-ndjson"]["schema"] == ref(
        f"{PKG}.WaitTelegramLoginResponse"
    )
    assert wait["x-switchboard-streaming"] == "server"


def test_message_schemas_follow_proto3_json(doc: dict[str, Any]) -> None:
    user = schemas(doc)[f"{PKG}.User"]
    props = user["properties"]

    assert user["description"] == "A person on the platform."
    assert set(props) == {
        "id",
        "telegram_user_id",
        "display_name",
        "username",
        "email",
        "role",
        "create_time",
        "last_login_time",
        "language",
    }
    assert props["telegram_user_id"]["type"] == "string"  # int64
    assert props["telegram_user_id"]["format"] == "int64"
    assert props["create_time"] == {"type": "string", "format": "date-time"}
    assert props["role"] == ref("switchboard.options.v1.Role")
    role = schemas(doc)["switchboard.options.v1.Role"]
    assert role["type"] == "string"
    assert role["enum"] == ["ROLE_UNSPECIFIED", "ROLE_USER", "ROLE_ADMIN", "ROLE_SUPER_ADMIN"]

    login = schemas(doc)[f"{PKG}.LoginWithTelegramWidgetRequest"]
    assert login["required"] == ["id", "auth_date", "hash"]
    assert login["properties"]["hash"]["pattern"] == "^[0-9a-f]{64}$"
    assert login["properties"]["first_name"]["maxLength"] == 256

    audit = schemas(doc)[f"{PKG}.AuditEvent"]["properties"]
    assert audit["attributes"]["type"] == "object"  # map<string, string>
    assert audit["attributes"]["additionalProperties"] == {"type": "string"}
    users = schemas(doc)[f"{PKG}.ListUsersResponse"]["properties"]["users"]
    assert users == {"type": "array", "items": ref(f"{PKG}.User")}
    state = schemas(doc)[f"{PKG}.HandshakeState"]
    assert "HANDSHAKE_STATE_CONFIRMED" in state["enum"]
    assert "`HANDSHAKE_STATE_PENDING`: Not confirmed yet" in state["description"]


def test_error_schema_is_google_rpc_status_with_details(doc: dict[str, Any]) -> None:
    status = schemas(doc)["google.rpc.Status"]
    variants = status["properties"]["details"]["items"]["anyOf"]
    type_urls = {
        part["properties"]["@type"]["const"]
        for variant in variants
        for part in variant.get("allOf", [])
        if "properties" in part
    }

    assert set(status["properties"]) == {"code", "message", "details"}
    assert "type.googleapis.com/google.rpc.ErrorInfo" in type_urls
    assert "type.googleapis.com/google.rpc.BadRequest" in type_urls
    bad_request = schemas(doc)["google.rpc.BadRequest"]
    assert "field_violations" in bad_request["properties"]  # snake_case, as Envoy prints it
    error = doc["components"]["responses"]["Unauthenticated"]
    assert error["content"]["application/json"]["schema"] == ref("google.rpc.Status")


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    for node in walk(doc):
        if isinstance(node, dict) and "$ref" in node:
            _, section, kind, name = node["$ref"].split("/", 3)
            assert name in doc[section][kind], node["$ref"]


def test_output_is_deterministic(image: Image, descriptor_image: Path, tmp_path: Path) -> None:
    first = dumps(build_openapi(image, version="1"))
    second = dumps(build_openapi(load_image(descriptor_image), version="1"))

    assert first == second
    assert list(json.loads(first)["paths"]) == sorted(json.loads(first)["paths"])
    out = write_openapi(descriptor_image, tmp_path / "a" / "openapi.json", version="1")
    assert out.read_text() == first
    mtime = out.stat().st_mtime_ns
    write_openapi(descriptor_image, out, version="1")
    assert out.stat().st_mtime_ns == mtime  # unchanged content is not rewritten


def test_cli_writes_the_document(descriptor_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"

    assert main(["--image", str(descriptor_image), "--out", str(out), "--version", "9"]) == 0
    assert json.loads(out.read_text())["info"]["version"] == "9"


# --- a synthetic contract: the less common mapping rules -----------------------------------------
SYNTHETIC_PROTO = """
syntax = "proto3";
package switchboard.testing.v1;

import "google/api/annotations.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "switchboard/options/v1/access.proto";
import "switchboard/options/v1/validate.proto";

// Shelves of books.
service Library {
  // Gets a book.
  rpc GetBook(GetBookRequest) returns (Book) {
    option (google.api.http) = {
      get: "/v1/{shelf.name=shelves/*}/books/{id}"
      additional_bindings {get: "/v1/books/{id}"}
    };
    option (switchboard.options.v1.access) = {allow: {authenticated: true}};
  }
  // Creates a book from the body field.
  rpc CreateBook(CreateBookRequest) returns (CreateBookResponse) {
    option (google.api.http) = {
      post: "/v1/shelves/{shelf_id}/books"
      body: "book"
      response_body: "book"
    };
  }
  // Uploads many books.
  rpc Upload(stream Book) returns (UploadResponse) {
    option (google.api.http) = {post: "/v1/books:upload" body: "*"};
  }
  // Not exposed over REST.
  rpc Internal(Book) returns (Book);
}

message Shelf {
  string name = 1;
  string owner = 2;
}

message GetBookRequest {
  Shelf shelf = 1;
  string id = 2;
  repeated string fields = 3;
  uint64 version = 4;
  map<string, string> labels = 5;
  google.protobuf.Duration max_age = 6;
  repeated Shelf skip = 7;
}

message Book {
  string id = 1;
  bytes cover = 2;
  double price = 3;
  bool available = 4;
  oneof format {
    string isbn = 5;
    int32 pages = 6;
  }
  google.protobuf.Struct extra = 7;
  repeated string tags = 8 [(switchboard.options.v1.field) = {min_len: 1, max_len: 5}];
  string title = 9 [deprecated = true];
}

message CreateBookRequest {
  string shelf_id = 1;
  Book book = 2 [(switchboard.options.v1.field) = {required: true}];
  bool dry_run = 3;
}

message CreateBookResponse {
  Book book = 1;
}

message UploadResponse {
  int64 count = 1;
}
"""

OTHER_PROTO = """
syntax = "proto3";
package other.v1;
import "google/api/annotations.proto";
service Other {
  rpc Ping(Empty) returns (Empty) { option (google.api.http) = {get: "/other/ping"}; }
}
message Empty {}
"""


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("protos")
    (root / "switchboard/testing/v1").mkdir(parents=True)
    (root / "switchboard/testing/v1/library.proto").write_text(SYNTHETIC_PROTO)
    (root / "other/v1").mkdir(parents=True)
    (root / "other/v1/other.proto").write_text(OTHER_PROTO)
    googleapis = Path(annotations_pb2.__file__).resolve().parents[2]
    out = root / "image.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{REPO_ROOT / 'proto'}",
            f"-I{googleapis}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            "switchboard/testing/v1/library.proto",
            "other/v1/other.proto",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    image = load_image(out)
    assert image.contract_services() == ["switchboard.testing.v1.Library"]
    return build_openapi(image, version="test")


def test_nested_path_variables_and_additional_bindings(synthetic: dict[str, Any]) -> None:
    primary = synthetic["paths"]["/v1/{shelf.name}/books/{id}"]["get"]
    extra = synthetic["paths"]["/v1/books/{id}"]["get"]
    found = params(primary)

    assert primary["operationId"] == "testing.v1.Library.GetBook"
    assert extra["operationId"] == "testing.v1.Library.GetBook.1"
    assert found["shelf.name"]["in"] == "path"
    # Remaining fields become query parameters: nested ones dotted, repeated ones exploded;
    # maps and repeated messages cannot be expressed in a query.
    assert set(found) == {"shelf.name", "id", "shelf.owner", "fields", "version", "max_age"}
    assert found["fields"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert found["fields"]["explode"] is True
    assert found["version"]["schema"]["format"] == "uint64"
    assert found["max_age"]["schema"]["type"] == "string"  # Duration
    assert set(params(extra)) == {"id", "shelf.name", "shelf.owner", "fields", "version", "max_age"}
    assert "x-switchboard-access" in primary


def test_body_field_response_body_and_no_policy(synthetic: dict[str, Any]) -> None:
    create = synthetic["paths"]["/v1/shelves/{shelf_id}/books"]["post"]

    assert set(params(create)) == {"shelf_id", "dry_run"}  # not the body field
    body = create["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"]["$ref"].endswith(
        "switchboard.testing.v1.Book"
    )
    ok = create["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("switchboard.testing.v1.Book")  # response_body: "book"
    assert create["security"] == [{"bearer": []}]
    assert "x-switchboard-access" not in create
    assert "no policy declared" in create["description"]


def test_client_streaming_body_is_an_array(synthetic: dict[str, Any]) -> None:
    upload = synthetic["paths"]["/v1/books:upload"]["post"]
    schema = upload["requestBody"]["content"]["application/json"]["schema"]

    assert schema == {"type": "array", "items": ref("switchboard.testing.v1.Book")}


def test_scalar_and_well_known_mappings(synthetic: dict[str, Any]) -> None:
    book = schemas(synthetic)["switchboard.testing.v1.Book"]["properties"]

    assert book["cover"]["format"] == "byte"
    assert book["price"] == {"type": "number", "format": "double"}
    assert book["available"] == {"type": "boolean"}
    assert "oneof `format`" in book["isbn"]["description"]
    assert book["extra"] == {"type": "object", "additionalProperties": True}
    assert book["tags"]["minItems"] == 1
    assert book["tags"]["maxItems"] == 5
    assert book["title"]["deprecated"] is True
    count = schemas(synthetic)["switchboard.testing.v1.UploadResponse"]["properties"]["count"]
    assert count["type"] == "string"


def test_only_contract_packages_and_http_rules(synthetic: dict[str, Any]) -> None:
    # An image without google/rpc still gets the error model.
    assert set(schemas(synthetic)["google.rpc.Status"]["properties"]) == {
        "code",
        "message",
        "details",
    }
    assert "/other/ping" not in synthetic["paths"]
    grpc_methods = [
        op["x-switchboard-grpc-method"]
        for item in synthetic["paths"].values()
        for op in item.values()
    ]
    assert not any(re.search(r"/Internal$", m) for m in grpc_methods)

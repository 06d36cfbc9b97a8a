"""OpenAPI 3.1 document for the REST/JSON API, generated from the buf descriptor image.

Never hand-written: paths, parameters and schemas come from the `google.api.http` rules,
the messages and their comments, the `switchboard.options.v1.field` constraints and the
`switchboard.options.v1.access` policies, and describe JSON exactly as Envoy's transcoder prints
it (proto3 JSON mapping with `preserve_proto_field_names`: snake_case names, 64-bit integers as
strings, enums as names, Timestamp as RFC 3339 strings, every scalar field printed).

    python -m gateway.openapi --image .build/switchboard.binpb --out .build/openapi.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from google.api import http_pb2
from google.protobuf import descriptor_pb2, json_format
from switchboard.options.v1 import access_pb2, validate_pb2

from gateway.descriptors import Image, MethodInfo, load_image

__all__ = ["build_openapi", "dumps", "main", "write_openapi"]

Schema = dict[str, Any]
FDP = descriptor_pb2.FieldDescriptorProto

_REF = "#/components/schemas/"
_ANY = "google.protobuf.Any"
_STATUS = "google.rpc.Status"
_ERROR_DETAILS_FILE = "google/rpc/error_details.proto"
_NDJSON = "application/x-ndjson"
_JSON = "application/json"
_HTTP_VERBS = ("get", "put", "post", "delete", "patch")
_OPENAPI_VERBS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_PATH_VAR = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")
_MAX_QUERY_DEPTH = 3

_INT32 = {FDP.TYPE_INT32, FDP.TYPE_SINT32, FDP.TYPE_SFIXED32}
_UINT32 = {FDP.TYPE_UINT32, FDP.TYPE_FIXED32}
_INT64 = {FDP.TYPE_INT64, FDP.TYPE_SINT64, FDP.TYPE_SFIXED64}
_UINT64 = {FDP.TYPE_UINT64, FDP.TYPE_FIXED64}

_SCALARS: dict[int, Schema] = {
    FDP.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FDP.TYPE_FLOAT: {"type": "number", "format": "float"},
    FDP.TYPE_BOOL: {"type": "boolean"},
    FDP.TYPE_STRING: {"type": "string"},
    FDP.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
    **{t: {"type": "integer", "format": "int32"} for t in _INT32},
    **{t: {"type": "integer", "format": "uint32", "minimum": 0} for t in _UINT32},
    # proto3 JSON prints 64-bit integers as decimal strings (and accepts numbers too).
    **{t: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"} for t in _INT64},
    **{t: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"} for t in _UINT64},
}

# Well-known types have their own JSON forms.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": 'Duration in seconds with an "s" suffix, e.g. "1.5s".',
    },
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated paths."},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "uint32", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}

_ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    # status: (component name, description)
    "400": (
        "BadRequest",
        "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE; "
        "google.rpc.BadRequest details list the offending fields.",
    ),
    "401": ("Unauthenticated", "UNAUTHENTICATED: missing, invalid or expired bearer token."),
    "403": ("PermissionDenied", "PERMISSION_DENIED: the caller may not call this method."),
    "404": ("NotFound", "NOT_FOUND: the addressed resource does not exist."),
    "429": (
        "TooManyRequests",
        "RESOURCE_EXHAUSTED: rate limited; google.rpc.RetryInfo details tell when to retry.",
    ),
    "503": ("Unavailable", "UNAVAILABLE: the service is unavailable; retry with backoff."),
    "default": ("Error", "Any other error, as a google.rpc.Status."),
}

_DESCRIPTION = """\
REST/JSON view of the Switchboard gRPC API, served by Envoy's gRPC-JSON transcoder. \
Generated from the protobuf contracts; the same methods are available over gRPC and gRPC-Web.

JSON follows the proto3 JSON mapping with the original (snake_case) field names. 64-bit \
integers are strings, enums are their names, timestamps are RFC 3339 strings. Responses always \
contain every scalar, enum, repeated and map field (default values included); unset message \
fields and unset `optional` fields are omitted.

Server-streaming methods answer with `application/x-ndjson`: one JSON message per line.

Errors are `google.rpc.Status` JSON (`code`, `message`, `details`) with an HTTP status derived \
from the gRPC code; `details` carry typed payloads such as `google.rpc.ErrorInfo` (a stable \
`reason`) and `google.rpc.BadRequest` (`field_violations`). Send `authorization: Bearer <token>`; \
an `x-request-id` header is echoed back (generated when absent).
"""


class _Schemas:
    """Builds `components.schemas` on demand, one component per message and enum."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.components: dict[str, Schema] = {}

    # --- references ----------------------------------------------------------------------------
    def message(self, full_name: str) -> Schema:
        if full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[full_name])
        if full_name not in self.components:
            self.components[full_name] = {}  # placeholder: breaks recursion
            self.components[full_name] = self._message_component(full_name)
        return {"$ref": _REF + full_name}

    def enum(self, full_name: str) -> Schema:
        if full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        if full_name not in self.components:
            enum = self.image.enums[full_name]
            lines = [self.image.comment("enum", full_name)]
            for value in enum.value:
                doc = self.image.comment("enum_value", f"{full_name}.{value.name}")
                lines.append(f"- `{value.name}`" + (f": {doc}" if doc else ""))
            self.components[full_name] = {
                "type": "string",
                "enum": [value.name for value in enum.value],
                "description": "\n".join(line for line in lines if line).strip(),
            }
        return {"$ref": _REF + full_name}

    # --- messages ------------------------------------------------------------------------------
    def _message_component(self, full_name: str) -> Schema:
        if full_name == _ANY:
            return {
                "type": "object",
                "description": "Any message, as JSON with its type URL in `@type`.",
                "properties": {"@type": {"type": "string"}},
                "required": ["@type"],
                "additionalProperties": True,
            }
        schema = self.object(full_name)
        if full_name == _STATUS:
            schema["properties"]["details"]["items"] = self._error_detail_items()
        return schema

    def status(self) -> Schema:
        """google.rpc.Status, from the image when it has it (it should: Envoy needs it too)."""
        if _STATUS in self.image.messages:
            return self.message(_STATUS)
        self.components[_STATUS] = {
            "type": "object",
            "description": "The error model (google.rpc.Status).",
            "properties": {
                "code": {"type": "integer", "format": "int32"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": self.message(_ANY)},
            },
        }
        return {"$ref": _REF + _STATUS}

    def object(self, full_name: str, exclude: frozenset[str] = frozenset()) -> Schema:
        """The JSON object schema of a message, without the fields named in `exclude`."""
        message = self.image.messages[full_name]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.field:
            if field.name in exclude:
                continue
            properties[field.name] = self.field(full_name, field)
            rules = self.image.field_rules(field)
            if rules is not None and rules.required:
                required.append(field.name)
        schema: Schema = {"type": "object", "properties": properties}
        if description := self.image.comment("message", full_name):
            schema["description"] = description
        if required:
            schema["required"] = required
        return schema

    def field(self, message_name: str, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        """Schema of one field (repeated and map included) with its comment and constraints."""
        rules = self.image.field_rules(field)
        repeated = field.label == FDP.LABEL_REPEATED
        entry = self._map_entry(field)
        if entry is not None:
            value_field = next(f for f in entry.field if f.name == "value")
            schema: Schema = {"type": "object", "additionalProperties": self.single(value_field)}
        elif repeated:
            schema = {"type": "array", "items": self.single(field, rules)}
            if rules is not None:
                _set_if(schema, "minItems", rules, "min_len")
                _set_if(schema, "maxItems", rules, "max_len")
        else:
            schema = self.single(field, rules)
        notes = [self.image.comment("field", f"{message_name}.{field.name}")]
        message = self.image.messages[message_name]
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneof = message.oneof_decl[field.oneof_index].name
            notes.append(f"Member of the oneof `{oneof}`: set at most one of its fields.")
        if description := "\n\n".join(note for note in notes if note):
            schema["description"] = description
        if field.options.deprecated:
            schema["deprecated"] = True
        if rules is not None:
            schema["x-switchboard-field"] = json_format.MessageToDict(
                rules, preserving_proto_field_name=True
            )
        return schema

    def single(
        self,
        field: descriptor_pb2.FieldDescriptorProto,
        rules: validate_pb2.FieldRules | None = None,
    ) -> Schema:
        """Schema of one value of the field (an item when repeated)."""
        type_name = field.type_name.lstrip(".")
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP):
            return self.message(type_name)
        if field.type == FDP.TYPE_ENUM:
            return self.enum(type_name)
        schema = dict(_SCALARS[field.type])
        if rules is None:
            return schema
        if field.type == FDP.TYPE_STRING:
            if field.label != FDP.LABEL_REPEATED:
                _set_if(schema, "minLength", rules, "min_len")
                _set_if(schema, "maxLength", rules, "max_len")
            if rules.pattern:
                schema["pattern"] = rules.pattern
            string_format = {
                validate_pb2.STRING_FORMAT_UUID: "uuid",
                validate_pb2.STRING_FORMAT_EMAIL: "email",
                validate_pb2.STRING_FORMAT_URI: "uri",
            }.get(rules.format)
            if string_format:
                schema["format"] = string_format
        elif schema.get("type") in ("integer", "number"):
            _set_if(schema, "minimum", rules, "gte")
            _set_if(schema, "maximum", rules, "lte")
        return schema

    def _map_entry(
        self, field: descriptor_pb2.FieldDescriptorProto
    ) -> descriptor_pb2.DescriptorProto | None:
        if field.type != FDP.TYPE_MESSAGE or field.label != FDP.LABEL_REPEATED:
            return None
        entry = self.image.messages.get(field.type_name.lstrip("."))
        if entry is None or not entry.options.map_entry:
            return None
        return entry

    def _error_detail_items(self) -> Schema:
        details = sorted(
            name
            for name in self.image.messages
            if self.image.files[name] == _ERROR_DETAILS_FILE
            and name.count(".") == 2  # top-level messages only: google.rpc.<Name>
        )
        variants: list[Schema] = [
            {
                "allOf": [
                    self.message(name),
                    {
                        "type": "object",
                        "properties": {"@type": {"const": f"type.googleapis.com/{name}"}},
                        "required": ["@type"],
                    },
                ]
            }
            for name in details
        ]
        return {"anyOf": [*variants, self.message(_ANY)]} if variants else self.message(_ANY)


def _set_if(
    schema: Schema,
    key: str,
    rules: validate_pb2.FieldRules,
    field: Literal["min_len", "max_len", "gte", "lte"],
) -> None:
    if rules.HasField(field):
        schema[key] = getattr(rules, field)


# --- operations --------------------------------------------------------------------------------
def _verb_and_template(rule: http_pb2.HttpRule) -> tuple[str, str] | None:
    pattern = rule.WhichOneof("pattern")
    if pattern in _HTTP_VERBS:
        return str(pattern), str(getattr(rule, str(pattern)))
    if pattern == "custom" and rule.custom.kind.lower() in _OPENAPI_VERBS:
        return rule.custom.kind.lower(), rule.custom.path
    return None


def _resolve_field(
    image: Image, message_name: str, dotted: str
) -> descriptor_pb2.FieldDescriptorProto:
    message = image.messages[message_name]
    head, _, rest = dotted.partition(".")
    field = next((f for f in message.field if f.name == head), None)
    if field is None:
        raise ValueError(f"{message_name} has no field {head!r} (http rule variable {dotted!r})")
    if rest:
        return _resolve_field(image, field.type_name.lstrip("."), rest)
    return field


def _query_parameters(
    schemas: _Schemas,
    message_name: str,
    prefix: str,
    skip: set[str],
    depth: int = 0,
) -> list[Schema]:
    """Query parameters for the fields not bound by the path or the body (dotted for nesting)."""
    params: list[Schema] = []
    image = schemas.image
    for field in image.messages[message_name].field:
        name = prefix + field.name
        if name in skip:
            continue
        type_name = field.type_name.lstrip(".")
        is_message = field.type == FDP.TYPE_MESSAGE and type_name not in _WELL_KNOWN
        if field.label == FDP.LABEL_REPEATED and (is_message or schemas._map_entry(field)):
            continue  # repeated messages and maps cannot be query parameters
        if is_message:
            if depth < _MAX_QUERY_DEPTH:
                params += _query_parameters(schemas, type_name, f"{name}.", skip, depth + 1)
            continue
        schema = schemas.field(message_name, field)
        description = schema.pop("description", None)
        param: Schema = {"name": name, "in": "query", "schema": schema}
        if field.label == FDP.LABEL_REPEATED:
            param.update(style="form", explode=True)
        rules = image.field_rules(field)
        if rules is not None and rules.required:
            param["required"] = True
        if description:
            param["description"] = description
        params.append(param)
    return params


def _access_text(policy: access_pb2.AccessPolicy | None) -> str:
    if policy is None:
        return "Access: no policy declared (the server refuses the call)."
    who = []
    for rule in policy.allow:
        kind = rule.WhichOneof("kind")
        if kind == "public":
            who.append("anyone (public)")
        elif kind == "authenticated":
            who.append("any authenticated user")
        elif kind == "role":
            who.append(f"role `{access_pb2.Role.Name(rule.role)}`")
        elif kind == "service_scope":
            who.append(f"services with scope `{rule.service_scope}`")
    text = "Access: " + (", ".join(who) or "nobody")
    if policy.rate_class:
        text += f"; rate class `{access_pb2.RateClass.Name(policy.rate_class)}`"
    return text + "."


def _is_public(policy: access_pb2.AccessPolicy | None) -> bool:
    return policy is not None and any(
        rule.WhichOneof("kind") == "public" and rule.public for rule in policy.allow
    )


def _operation(
    schemas: _Schemas,
    method: MethodInfo,
    rule: http_pb2.HttpRule,
    verb: str,
    template: str,
    operation_id: str,
) -> Schema:
    image = schemas.image
    path_vars = _PATH_VAR.findall(template)
    parameters: list[Schema] = []
    for var in path_vars:
        field = _resolve_field(image, method.input_type, var)
        owner = method.input_type
        if "." in var:
            owner = _resolve_owner(image, method.input_type, var)
        schema = schemas.field(owner, field)
        description = schema.pop("description", None)
        param: Schema = {"name": var, "in": "path", "required": True, "schema": schema}
        if description:
            param["description"] = description
        parameters.append(param)

    operation: Schema = {
        "operationId": operation_id,
        "tags": [_short(method.service)],
        "x-switchboard-grpc-method": f"{method.service}/{method.name}",
    }
    comment = method.comment
    if comment:
        operation["summary"] = _first_sentence(comment)
    operation["description"] = "\n\n".join(p for p in (comment, _access_text(method.access)) if p)

    body = rule.body
    if body != "*":
        skip = set(path_vars) | ({body} if body else set())
        parameters += _query_parameters(schemas, method.input_type, "", skip)
    parameters.append({"$ref": "#/components/parameters/RequestId"})
    operation["parameters"] = parameters

    if body:
        top_level_vars = frozenset(v for v in path_vars if "." not in v)
        if body == "*":
            if top_level_vars:
                body_schema = schemas.object(method.input_type, exclude=top_level_vars)
            else:
                body_schema = schemas.message(method.input_type)
            required_body = bool(
                schemas.object(method.input_type, exclude=top_level_vars).get("required")
            )
        else:
            field = _resolve_field(image, method.input_type, body)
            body_schema = schemas.field(method.input_type, field)
            rules = image.field_rules(field)
            required_body = rules is not None and rules.required
        if method.client_streaming:
            body_schema = {"type": "array", "items": body_schema}
        operation["requestBody"] = {
            "required": required_body,
            "content": {_JSON: {"schema": body_schema}},
        }

    if rule.response_body:
        field = _resolve_field(image, method.output_type, rule.response_body)
        response_schema = schemas.field(method.output_type, field)
    else:
        response_schema = schemas.message(method.output_type)
    if method.server_streaming:
        success = {
            "description": "A stream of messages, one JSON object per line (NDJSON); the "
            "schema is that of one line.",
            "content": {_NDJSON: {"schema": response_schema}},
        }
        operation["x-switchboard-streaming"] = "server"
    else:
        success = {"description": "OK", "content": {_JSON: {"schema": response_schema}}}
    responses: Schema = {"200": success}
    public = _is_public(method.access)
    wanted = {"400", "503", "default"}
    if not public:
        wanted |= {"401", "403"}
    if path_vars:
        wanted.add("404")
    if method.access is not None and method.access.rate_class:
        wanted.add("429")
    for status in wanted:
        responses[status] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status][0]}"}
    operation["responses"] = responses

    if public:
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": []}]
    if method.access is not None:
        operation["x-switchboard-access"] = json_format.MessageToDict(
            method.access, preserving_proto_field_name=True
        )
    return operation


def _resolve_owner(image: Image, message_name: str, dotted: str) -> str:
    head, _, rest = dotted.partition(".")
    if not rest:
        return message_name
    field = _resolve_field(image, message_name, head)
    return _resolve_owner(image, field.type_name.lstrip("."), rest)


def _short(service: str) -> str:
    """ "switchboard.identity.v1.AuthService" -> "identity.v1.AuthService"."""
    return service.removeprefix("switchboard.")


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.:])(\s|$)", flat)
    return match.group(1) if match else flat


# --- document ----------------------------------------------------------------------------------
def build_openapi(
    image: Image,
    *,
    title: str = "Switchboard API",
    version: str | None = None,
    services: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-ready dict) for the services' REST mappings."""
    schemas = _Schemas(image)
    service_names = sorted(services) if services is not None else image.contract_services()
    paths: dict[str, dict[str, Schema]] = {}
    tags: list[Schema] = []
    for service in service_names:
        tag: Schema = {"name": _short(service)}
        if doc := image.comment("service", service):
            tag["description"] = doc
        tags.append(tag)
    for method in image.methods(service_names):
        if method.http is None:
            continue
        bindings = [method.http, *method.http.additional_bindings]
        for index, rule in enumerate(bindings):
            found = _verb_and_template(rule)
            if found is None:
                continue
            verb, template = found
            path = _PATH_VAR.sub(r"{\1}", template)
            operation_id = f"{_short(method.service)}.{method.name}"
            if index:
                operation_id += f".{index}"
            if verb in paths.get(path, {}):
                raise ValueError(f"two methods map to {verb.upper()} {path}")
            paths.setdefault(path, {})[verb] = _operation(
                schemas, method, rule, verb, template, operation_id
            )
    error_ref = schemas.status()
    responses = {
        name: {"description": description, "content": {_JSON: {"schema": error_ref}}}
        for name, description in _ERROR_RESPONSES.values()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version or _package_version(),
            "description": _DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": sorted(tags, key=lambda t: str(t["name"])),
        "paths": dict(sorted(paths.items())),
        "security": [{"bearer": []}],
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": responses,
            "parameters": {
                "RequestId": {
                    "name": "x-request-id",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 128},
                    "description": "Correlation id, echoed in the response; generated by the "
                    "gateway when absent.",
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token (`Session.token`) or a service token.",
                }
            },
        },
    }


def _package_version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def dumps(document: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_openapi(
    image_path: Path,
    out_path: Path,
    *,
    title: str = "Switchboard API",
    version: str | None = None,
) -> Path:
    """Generates the document from a descriptor image file and writes it to `out_path`."""
    document = build_openapi(load_image(image_path), title=title, version=version)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    text = dumps(document)
    # Only rewrite on change: keeps mtimes stable for make and for Envoy restarts.
    if not out_path.exists() or out_path.read_text(encoding="utf-8") != text:
        out_path.write_text(text, encoding="utf-8")
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.openapi",
        description="Generate the OpenAPI document from the descriptor image.",
    )
    parser.add_argument("--image", type=Path, default=Path(".build/switchboard.binpb"))
    parser.add_argument("--out", type=Path, default=Path(".build/openapi.json"))
    parser.add_argument("--title", default="Switchboard API")
    parser.add_argument("--version", default=None, help="info.version (default: package version)")
    args = parser.parse_args(argv)
    write_openapi(args.image, args.out, title=args.title, version=args.version)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

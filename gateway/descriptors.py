"""Reading the buf descriptor image (a FileDescriptorSet) that Envoy's transcoder also loads.

Everything the gateway derives from the contracts (the transcoded services, the streaming
routes, the OpenAPI document) comes from this one file, so the gateway never drifts from
what Envoy actually serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from switchboard.options.v1 import access_pb2, validate_pb2

__all__ = [
    "CONTRACT_PACKAGE_PREFIX",
    "Image",
    "MethodInfo",
    "load_image",
]

# Services of packages under this prefix are ours: transcoded by Envoy, documented in OpenAPI.
CONTRACT_PACKAGE_PREFIX = "switchboard."

# FileDescriptorProto field numbers used in SourceCodeInfo paths.
_FILE_MESSAGE_TYPE = 4
_FILE_ENUM_TYPE = 5
_FILE_SERVICE = 6
_MESSAGE_FIELD = 2
_MESSAGE_NESTED_TYPE = 3
_MESSAGE_ENUM_TYPE = 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2


@dataclass(frozen=True)
class MethodInfo:
    """One RPC of a contract service, with the options the gateway cares about."""

    service: str  # fully qualified, e.g. "switchboard.identity.v1.AuthService"
    name: str  # e.g. "GetMe"
    input_type: str  # fully qualified message name, no leading dot
    output_type: str
    client_streaming: bool
    server_streaming: bool
    http: http_pb2.HttpRule | None
    access: access_pb2.AccessPolicy | None
    comment: str
    service_comment: str

    @property
    def grpc_path(self) -> str:
        """The HTTP/2 path of the RPC, as Envoy routes it after transcoding."""
        return f"/{self.service}/{self.name}"

    @property
    def streaming(self) -> bool:
        return self.client_streaming or self.server_streaming


class Image:
    """An indexed FileDescriptorSet: messages, enums, services, comments and options."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.fds = fds
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        self.packages: dict[str, str] = {}  # fully qualified service/message/enum -> package
        self.files: dict[str, str] = {}  # fully qualified service/message/enum -> file name
        self._comments: dict[str, str] = {}  # "kind:full.name" -> leading comment
        self._file = ""
        for file in fds.file:
            comments = {
                tuple(loc.path): _clean_comment(loc.leading_comments)
                for loc in file.source_code_info.location
                if loc.leading_comments
            }
            prefix = f"{file.package}." if file.package else ""
            self._file = file.name
            for i, message in enumerate(file.message_type):
                self._index_message(
                    file.package, prefix, message, (_FILE_MESSAGE_TYPE, i), comments
                )
            for i, enum in enumerate(file.enum_type):
                self._index_enum(file.package, prefix, enum, (_FILE_ENUM_TYPE, i), comments)
            for i, service in enumerate(file.service):
                full = prefix + service.name
                self.services[full] = service
                self.packages[full] = file.package
                self.files[full] = file.name
                self._comments[f"service:{full}"] = comments.get((_FILE_SERVICE, i), "")
                for j, method in enumerate(service.method):
                    path = (_FILE_SERVICE, i, _SERVICE_METHOD, j)
                    self._comments[f"method:{full}.{method.name}"] = comments.get(path, "")

    # --- indexing ------------------------------------------------------------------------------
    def _index_message(
        self,
        package: str,
        prefix: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        full = prefix + message.name
        self.messages[full] = message
        self.packages[full] = package
        self.files[full] = self._file
        self._comments[f"message:{full}"] = comments.get(path, "")
        for j, field in enumerate(message.field):
            self._comments[f"field:{full}.{field.name}"] = comments.get(
                (*path, _MESSAGE_FIELD, j), ""
            )
        for j, nested in enumerate(message.nested_type):
            self._index_message(
                package, f"{full}.", nested, (*path, _MESSAGE_NESTED_TYPE, j), comments
            )
        for j, enum in enumerate(message.enum_type):
            self._index_enum(package, f"{full}.", enum, (*path, _MESSAGE_ENUM_TYPE, j), comments)

    def _index_enum(
        self,
        package: str,
        prefix: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        full = prefix + enum.name
        self.enums[full] = enum
        self.packages[full] = package
        self.files[full] = self._file
        self._comments[f"enum:{full}"] = comments.get(path, "")
        for j, value in enumerate(enum.value):
            self._comments[f"enum_value:{full}.{value.name}"] = comments.get(
                (*path, _ENUM_VALUE, j), ""
            )

    # --- queries -------------------------------------------------------------------------------
    def comment(self, kind: str, full_name: str) -> str:
        """Leading comment of a "message", "field", "enum", "enum_value", "service" or "method"."""
        return self._comments.get(f"{kind}:{full_name}", "")

    def contract_services(self) -> list[str]:
        """Every service of a `switchboard.*` package, sorted: what Envoy transcodes."""
        return sorted(
            name
            for name, package in self.packages.items()
            if name in self.services and package.startswith(CONTRACT_PACKAGE_PREFIX)
        )

    def methods(self, services: list[str] | None = None) -> Iterator[MethodInfo]:
        """The methods of the given services (default: the contract services), in order."""
        for service_name in services if services is not None else self.contract_services():
            service = self.services[service_name]
            for method in service.method:
                yield MethodInfo(
                    service=service_name,
                    name=method.name,
                    input_type=method.input_type.lstrip("."),
                    output_type=method.output_type.lstrip("."),
                    client_streaming=method.client_streaming,
                    server_streaming=method.server_streaming,
                    http=_http_rule(method.options),
                    access=_access_policy(method.options),
                    comment=self.comment("method", f"{service_name}.{method.name}"),
                    service_comment=self.comment("service", service_name),
                )

    def field_rules(
        self, field: descriptor_pb2.FieldDescriptorProto
    ) -> validate_pb2.FieldRules | None:
        """The `switchboard.options.v1.field` constraints declared on a field, if any."""
        if not field.HasField("options"):
            return None
        # Options parsed before the extension modules were imported keep extensions as unknown
        # fields; a round trip through bytes resolves them against the registered extensions.
        options = descriptor_pb2.FieldOptions.FromString(field.options.SerializeToString())
        if not options.HasExtension(validate_pb2.field):
            return None
        return options.Extensions[validate_pb2.field]


def load_image(path: Path) -> Image:
    """Reads a buf image / protoc `--include_imports` descriptor set from disk."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(path).read_bytes())
    if not fds.file:
        raise ValueError(f"{path}: empty descriptor set")
    return Image(fds)


def _http_rule(options: descriptor_pb2.MethodOptions) -> http_pb2.HttpRule | None:
    parsed = descriptor_pb2.MethodOptions.FromString(options.SerializeToString())
    if not parsed.HasExtension(annotations_pb2.http):
        return None
    return parsed.Extensions[annotations_pb2.http]


def _access_policy(options: descriptor_pb2.MethodOptions) -> access_pb2.AccessPolicy | None:
    parsed = descriptor_pb2.MethodOptions.FromString(options.SerializeToString())
    if not parsed.HasExtension(access_pb2.access):
        return None
    return parsed.Extensions[access_pb2.access]


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()

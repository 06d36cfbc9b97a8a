"""The contract as the kernel sees it: each RPC's access policy, input type and shape.

Policies come from the ``switchboard.options.v1.access`` method option, read from the
descriptor pool. A method without one has ``policy=None`` and every call to it is refused.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from switchboard.options.v1 import access_pb2

# Infrastructure services that are not ours to annotate: open to anyone, like a load balancer.
INFRASTRUCTURE_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


@dataclass(frozen=True, slots=True)
class MethodInfo:
    full_name: str  # "/package.Service/Method"
    service: str
    name: str
    policy: access_pb2.AccessPolicy | None
    descriptor: MethodDescriptor | None
    server_streaming: bool

    @property
    def rate_class(self) -> int:
        if self.policy is None:
            return access_pb2.RATE_CLASS_UNSPECIFIED
        return self.policy.rate_class


def policy_of(method: MethodDescriptor) -> access_pb2.AccessPolicy | None:
    options = method.GetOptions()
    if not options.HasExtension(access_pb2.access):
        return None
    policy: access_pb2.AccessPolicy = options.Extensions[access_pb2.access]
    return policy if len(policy.allow) > 0 else None


class MethodRegistry:
    def __init__(self, services: Iterable[ServiceDescriptor]) -> None:
        self._methods: dict[str, MethodInfo] = {}
        for service in services:
            for method in service.methods:
                full = f"/{service.full_name}/{method.name}"
                self._methods[full] = MethodInfo(
                    full_name=full,
                    service=service.full_name,
                    name=method.name,
                    policy=policy_of(method),
                    descriptor=method,
                    server_streaming=method.server_streaming,
                )

    def get(self, full_name: str) -> MethodInfo:
        known = self._methods.get(full_name)
        if known is not None:
            return known
        service, _, name = full_name.lstrip("/").partition("/")
        public = access_pb2.AccessPolicy(allow=[access_pb2.AccessRule(public=True)])
        return MethodInfo(
            full_name=full_name,
            service=service,
            name=name,
            policy=public if service in INFRASTRUCTURE_SERVICES else None,
            descriptor=None,
            server_streaming=False,
        )

    def all(self) -> list[MethodInfo]:
        return list(self._methods.values())


def contract_services() -> list[ServiceDescriptor]:
    """Every service of every generated ``switchboard.*`` contract module."""
    import switchboard

    found: list[ServiceDescriptor] = []
    for module_info in pkgutil.walk_packages(switchboard.__path__, "switchboard."):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(module_info.name)
            found.extend(module.DESCRIPTOR.services_by_name.values())
    return sorted(found, key=lambda s: s.full_name)

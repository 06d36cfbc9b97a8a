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


# Bucket names in the `rate_limits` configuration, per contract rate class.
RATE_CLASS_NAMES: dict[int, str] = {
    access_pb2.RATE_CLASS_UNSPECIFIED: "default",
    access_pb2.RATE_CLASS_READ: "read",
    access_pb2.RATE_CLASS_WRITE: "write",
    access_pb2.RATE_CLASS_AUTH: "auth",
    access_pb2.RATE_CLASS_STREAM: "stream",
}


@dataclass(frozen=True, slots=True)
class MethodInfo:
    full_name: str  # "/package.Service/Method"
    service: str
    name: str
    policy: access_pb2.AccessPolicy | None
    rate_class: str  # the rate-limit bucket this method draws from

    @classmethod
    def of(cls, service: str, name: str, policy: access_pb2.AccessPolicy | None) -> MethodInfo:
        value = policy.rate_class if policy is not None else access_pb2.RATE_CLASS_UNSPECIFIED
        return cls(
            full_name=f"/{service}/{name}",
            service=service,
            name=name,
            policy=policy,
            rate_class=RATE_CLASS_NAMES.get(value, "default"),
        )


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
                info = MethodInfo.of(service.full_name, method.name, policy_of(method))
                self._methods[info.full_name] = info

    def get(self, full_name: str) -> MethodInfo:
        known = self._methods.get(full_name)
        if known is not None:
            return known
        service, _, name = full_name.lstrip("/").partition("/")
        public = access_pb2.AccessPolicy(allow=[access_pb2.AccessRule(public=True)])
        return MethodInfo.of(service, name, public if service in INFRASTRUCTURE_SERVICES else None)


def contract_services() -> list[ServiceDescriptor]:
    """Every service of every generated ``switchboard.*`` contract module."""
    import switchboard

    found: list[ServiceDescriptor] = []
    for module_info in pkgutil.walk_packages(switchboard.__path__, "switchboard."):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(module_info.name)
            found.extend(module.DESCRIPTOR.services_by_name.values())
    return sorted(found, key=lambda s: s.full_name)

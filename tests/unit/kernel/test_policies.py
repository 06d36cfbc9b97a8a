"""Every RPC of every contract declares who may call it, and the rules mean what they say."""

from __future__ import annotations

from uuid import uuid4

import pytest
from switchboard.options.v1 import access_pb2

from server.kernel import access
from server.kernel.methods import MethodRegistry, contract_services, policy_of
from server.kernel.principal import Principal, Role, ServicePrincipal, UserPrincipal


def test_contracts_have_services() -> None:
    names = {s.full_name for s in contract_services()}
    assert {"switchboard.identity.v1.AuthService", "switchboard.identity.v1.AdminService"} <= names


@pytest.mark.parametrize(
    "method",
    [m for s in contract_services() for m in s.methods],
    ids=lambda m: m.full_name,
)
def test_every_rpc_declares_a_policy(method: object) -> None:
    policy = policy_of(method)  # type: ignore[arg-type]
    assert policy is not None, "add option (switchboard.options.v1.access) to this RPC"
    assert len(policy.allow) > 0
    assert policy.rate_class != access_pb2.RATE_CLASS_UNSPECIFIED, "choose a rate class"


def test_unknown_method_has_no_policy_and_infrastructure_is_public() -> None:
    registry = MethodRegistry(contract_services())
    assert registry.get("/switchboard.identity.v1.AuthService/Nope").policy is None
    health = registry.get("/grpc.health.v1.Health/Check").policy
    assert access.allows(health, Principal())


def _user(role: Role) -> Principal:
    return Principal(user=UserPrincipal(user_id=uuid4(), role=role))


def test_rules() -> None:
    public = access_pb2.AccessPolicy(allow=[access_pb2.AccessRule(public=True)])
    authed = access_pb2.AccessPolicy(allow=[access_pb2.AccessRule(authenticated=True)])
    admins = access_pb2.AccessPolicy(
        allow=[
            access_pb2.AccessRule(role=access_pb2.ROLE_ADMIN),
            access_pb2.AccessRule(role=access_pb2.ROLE_SUPER_ADMIN),
        ]
    )
    scoped = access_pb2.AccessPolicy(allow=[access_pb2.AccessRule(service_scope="x.y")])
    service = Principal(service=ServicePrincipal("bot", frozenset({"x.y"})))
    bare_service = Principal(service=ServicePrincipal("bot", frozenset()))

    assert access.allows(public, Principal())
    assert not access.allows(authed, Principal())
    assert access.allows(authed, _user(Role.USER))
    assert not access.allows(authed, service), "a service is not a user unless it acts as one"
    assert not access.allows(admins, _user(Role.USER))
    assert access.allows(admins, _user(Role.ADMIN))
    assert access.allows(admins, _user(Role.SUPER_ADMIN))
    assert access.allows(scoped, service)
    assert not access.allows(scoped, bare_service)
    assert not access.allows(scoped, _user(Role.SUPER_ADMIN))
    assert not access.allows(None, _user(Role.SUPER_ADMIN)), "no policy, no access"


def test_every_rate_class_has_a_configured_bucket() -> None:
    """A rate class without a bucket would silently be unlimited."""
    from pathlib import Path

    import yaml

    from server.config import Settings
    from server.kernel.methods import RATE_CLASS_NAMES

    factory = Settings.model_fields["rate_limits"].default_factory
    assert factory is not None
    assert set(RATE_CLASS_NAMES.values()) <= set(factory())  # type: ignore[call-arg]
    configs = Path(__file__).resolve().parents[3] / "configs"
    for path in configs.glob("*.yaml"):
        configured = yaml.safe_load(path.read_text()).get("rate_limits")
        if configured is not None:
            assert set(RATE_CLASS_NAMES.values()) <= set(configured), path.name


async def test_domain_roles_are_asked_of_their_domain_only_when_needed() -> None:
    masters: set[object] = set()
    asked: list[object] = []

    async def is_master(user: UserPrincipal) -> bool:
        asked.append(user.user_id)
        return user.user_id in masters

    resolvers = {"booking.master": is_master}
    master_only = access_pb2.AccessPolicy(
        allow=[access_pb2.AccessRule(domain_role="booking.master")]
    )
    master_or_admin = access_pb2.AccessPolicy(
        allow=[
            access_pb2.AccessRule(role=access_pb2.ROLE_ADMIN),
            access_pb2.AccessRule(domain_role="booking.master"),
        ]
    )
    unknown_role = access_pb2.AccessPolicy(allow=[access_pb2.AccessRule(domain_role="x.nobody")])
    master, client = _user(Role.USER), _user(Role.USER)
    assert master.user is not None
    assert client.user is not None
    masters.add(master.user.user_id)

    assert await access.allows_with_domain_roles(master_only, master, resolvers)
    assert not await access.allows_with_domain_roles(master_only, client, resolvers)
    assert not access.allows(master_only, master), "without resolvers a domain role matches nobody"
    assert not await access.allows_with_domain_roles(unknown_role, master, resolvers)
    assert not await access.allows_with_domain_roles(master_only, Principal(), resolvers)
    asked.clear()
    assert await access.allows_with_domain_roles(master_or_admin, _user(Role.ADMIN), resolvers)
    assert asked == [], "a cheaper rule matched: the domain is not asked"


@pytest.mark.parametrize(
    "method",
    [
        m
        for s in contract_services()
        for m in s.methods
        if any(
            r.WhichOneof("kind") == "domain_role"
            for r in (policy_of(m) or access_pb2.AccessPolicy()).allow
        )
    ],
    ids=lambda m: m.full_name,
)
def test_domain_roles_in_contracts_are_known(method: object) -> None:
    """A typo in a contract's domain role would lock everybody out: names are <domain>.<role>."""
    policy = policy_of(method)  # type: ignore[arg-type]
    assert policy is not None
    for rule in policy.allow:
        if rule.WhichOneof("kind") == "domain_role":
            assert rule.domain_role in {"booking.master"}

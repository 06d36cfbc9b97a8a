"""Authorization: does the method's declared policy let this principal in?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from switchboard.options.v1 import access_pb2

from server.kernel.principal import Principal, Role, UserPrincipal

_ROLE_OF_OPTION: dict[int, Role] = {
    access_pb2.ROLE_USER: Role.USER,
    access_pb2.ROLE_ADMIN: Role.ADMIN,
    access_pb2.ROLE_SUPER_ADMIN: Role.SUPER_ADMIN,
}


def role_from_proto(value: int) -> Role:
    return _ROLE_OF_OPTION[value]


def role_to_proto(role: Role) -> access_pb2.Role.ValueType:
    for value, known in _ROLE_OF_OPTION.items():
        if known is role:
            return access_pb2.Role.ValueType(value)
    raise ValueError(role)


# A domain-derived role ("booking.master"): does this user hold it? Registered by the
# domain in the composition root; the answer comes from the domain's own data.
DomainRoleResolver = Callable[[UserPrincipal], Awaitable[bool]]


def rule_allows(rule: access_pb2.AccessRule, principal: Principal) -> bool:
    kind = rule.WhichOneof("kind")
    if kind == "public":
        return rule.public
    if kind == "authenticated":
        return rule.authenticated and principal.user is not None
    if kind == "role":
        return principal.user is not None and principal.user.role is _ROLE_OF_OPTION.get(rule.role)
    if kind == "service_scope":
        return principal.service is not None and rule.service_scope in principal.service.scopes
    return False


def allows(policy: access_pb2.AccessPolicy | None, principal: Principal) -> bool:
    """No policy means no access: an undeclared RPC is never callable. Domain roles are
    not known here (see ``allows_with_domain_roles``): a ``domain_role`` rule matches nobody."""
    if policy is None:
        return False
    return any(rule_allows(rule, principal) for rule in policy.allow)


async def allows_with_domain_roles(
    policy: access_pb2.AccessPolicy | None,
    principal: Principal,
    resolvers: Mapping[str, DomainRoleResolver],
) -> bool:
    """``allows``, then each ``domain_role`` rule asked of its domain (only when no cheaper
    rule matched, and only for a user). An unregistered role matches nobody."""
    if allows(policy, principal):
        return True
    if policy is None or principal.user is None:
        return False
    for rule in policy.allow:
        if rule.WhichOneof("kind") == "domain_role":
            resolve = resolvers.get(rule.domain_role)
            if resolve is not None and await resolve(principal.user):
                return True
    return False

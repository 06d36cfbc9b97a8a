"""Authorization: does the method's declared policy let this principal in?"""

from __future__ import annotations

from switchboard.options.v1 import access_pb2

from server.kernel.principal import Principal, Role

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
    """No policy means no access: an undeclared RPC is never callable."""
    if policy is None:
        return False
    return any(rule_allows(rule, principal) for rule in policy.allow)

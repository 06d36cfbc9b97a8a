"""User administration: paging, promotion, soft delete."""

from __future__ import annotations

import grpc
import pytest
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from tests.support.api import Api, error_info, field_violations
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID


async def test_list_users_pages_without_gaps_or_repeats(api: Api) -> None:
    created = {(await api.login()).user.id for _ in range(7)}
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    seen: list[str] = []
    token = ""
    while True:
        page = await api.admin.ListUsers(
            pb.ListUsersRequest(page_size=3, page_token=token), metadata=boss.metadata
        )
        assert len(page.users) <= 3
        seen.extend(u.id for u in page.users)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert created <= set(seen)


async def test_garbage_page_token_is_invalid_argument(api: Api) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.admin.ListUsers(
            pb.ListUsersRequest(page_token="garbage!"), metadata=boss.metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == [("page_token", "INVALID_PAGE_TOKEN")]


async def test_promote_is_idempotent_and_audited(api: Api) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    target = await api.login()
    for _ in range(2):
        promoted = await api.admin.PromoteUser(
            pb.PromoteUserRequest(user_id=target.user.id), metadata=boss.metadata
        )
        assert promoted.user.role == access_pb2.ROLE_ADMIN
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=target.metadata)
    assert me.user.role == access_pb2.ROLE_ADMIN
    # A promoted admin may now list users.
    await api.admin.ListUsers(pb.ListUsersRequest(), metadata=target.metadata)
    events = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(action="user.promote"), metadata=boss.metadata
    )
    assert any(e.target == f"user:{target.user.id}" for e in events.events)


async def test_promoting_a_super_admin_does_not_demote(api: Api) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    result = await api.admin.PromoteUser(
        pb.PromoteUserRequest(user_id=boss.user.id), metadata=boss.metadata
    )
    assert result.user.role == access_pb2.ROLE_SUPER_ADMIN


async def test_delete_user_revokes_sessions_and_hides_the_user(api: Api) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    victim = await api.login()
    await api.admin.DeleteUser(pb.DeleteUserRequest(user_id=victim.user.id), metadata=boss.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.GetMe(pb.GetMeRequest(), metadata=victim.metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.login(victim.user.telegram_user_id)
    assert error_info(caught.value).reason == "USER_DELETED"
    # A retried delete succeeds again; an unknown user is NOT_FOUND.
    await api.admin.DeleteUser(pb.DeleteUserRequest(user_id=victim.user.id), metadata=boss.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.admin.DeleteUser(
            pb.DeleteUserRequest(user_id="00000000-0000-4000-8000-000000000000"),
            metadata=boss.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_audit_events_page_newest_first(api: Api) -> None:
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    for _ in range(3):
        await api.login()
    first = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(page_size=2), metadata=boss.metadata
    )
    second = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(page_size=2, page_token=first.next_page_token),
        metadata=boss.metadata,
    )
    ids = [int(e.id) for e in [*first.events, *second.events]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4

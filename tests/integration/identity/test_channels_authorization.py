"""ChannelService: each kind of caller x each RPC, allowed or refused (written out by hand)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from switchboard.identity.v1 import channels_pb2 as cpb
from switchboard.identity.v1 import channels_pb2_grpc as cpb_grpc

from tests.conftest import Platform
from tests.integration.identity.test_authorization_matrix import (
    CALLERS,
    DENIED,
    OK,
    UNAUTH,
    _callers,
    _outcome,
)
from tests.support.api import Api, Metadata

AUTHENTICATED = {
    "anonymous": UNAUTH, "user": OK, "admin": OK, "super_admin": OK,
    "bot": DENIED, "bot_as_user": OK, "worker": DENIED,
}  # fmt: skip
EXPECTED: dict[str, dict[str, str]] = {
    "ChannelService/StartTelegramChannelBinding": AUTHENTICATED,
    "ChannelService/ConfirmTelegramChannelBinding": {
        "anonymous": UNAUTH, "user": DENIED, "admin": DENIED, "super_admin": DENIED,
        "bot": OK, "bot_as_user": OK, "worker": DENIED,
    },
    "ChannelService/ListChannels": AUTHENTICATED,
    "ChannelService/DeleteChannel": AUTHENTICATED,
    "ChannelService/StartEmailVerification": AUTHENTICATED,
    "ChannelService/ConfirmEmailVerification": AUTHENTICATED,
    "ChannelService/SetLanguage": AUTHENTICATED,
}  # fmt: skip


def test_matrix_covers_every_rpc() -> None:
    names = {
        f"{s.name}/{m.name}" for s in cpb.DESCRIPTOR.services_by_name.values() for m in s.methods
    }
    assert names == set(EXPECTED)
    assert all(set(row) == set(CALLERS) for row in EXPECTED.values())


def _calls(api: Api) -> dict[str, Callable[[Metadata], Awaitable[Any]]]:
    stub = cpb_grpc.ChannelServiceStub(api.channel)
    return {
        "ChannelService/StartTelegramChannelBinding": lambda md: stub.StartTelegramChannelBinding(
            cpb.StartTelegramChannelBindingRequest(), metadata=md
        ),
        "ChannelService/ConfirmTelegramChannelBinding": lambda md: (
            stub.ConfirmTelegramChannelBinding(
                cpb.ConfirmTelegramChannelBindingRequest(code="unknownCode1", chat_id=1),
                metadata=md,
            )
        ),
        "ChannelService/ListChannels": lambda md: stub.ListChannels(
            cpb.ListChannelsRequest(), metadata=md
        ),
        "ChannelService/DeleteChannel": lambda md: stub.DeleteChannel(
            cpb.DeleteChannelRequest(channel_id=str(uuid.uuid4())), metadata=md
        ),
        "ChannelService/StartEmailVerification": lambda md: stub.StartEmailVerification(
            cpb.StartEmailVerificationRequest(email=f"m-{uuid.uuid4().hex}@example.com"),
            metadata=md,
        ),
        "ChannelService/ConfirmEmailVerification": lambda md: stub.ConfirmEmailVerification(
            cpb.ConfirmEmailVerificationRequest(email="nobody@example.com", code="000000"),
            metadata=md,
        ),
        "ChannelService/SetLanguage": lambda md: stub.SetLanguage(
            cpb.SetLanguageRequest(language="en"), metadata=md
        ),
    }


@pytest.mark.parametrize("rpc", sorted(EXPECTED))
async def test_channel_authorization_matrix(api: Api, platform: Platform, rpc: str) -> None:
    callers = await _callers(api, platform)
    call = _calls(api)[rpc]
    got = {caller: await _outcome(call, md) for caller, md in callers.items()}
    assert got == EXPECTED[rpc]

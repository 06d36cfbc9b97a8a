"""Rooms through Envoy: REST create/join/send/history, Subscribe as NDJSON and as gRPC-Web."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from switchboard.rooms.v1 import rooms_pb2 as pb

from gateway.grpcweb import TRAILER_FLAG, encode_request
from tests.conftest import Platform
from tests.support.api import next_telegram_id
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID
from tests.support.telegram import signed_widget_payload


async def _login(
    http: httpx.AsyncClient, platform: Platform, telegram_id: int | None = None
) -> dict[str, str]:
    payload = signed_widget_payload(
        platform.secrets.login_bot_token, telegram_id or next_telegram_id(), first_name="Web"
    )
    response = await http.post("/v1/auth/telegram/login", json=payload)
    assert response.status_code == 200, response.text
    token = response.json()["session"]["token"]
    platform.secrets.issued.append(token)
    return {"Authorization": f"Bearer {token}", "x-user-id": response.json()["user"]["id"]}


def _auth(who: dict[str, str]) -> dict[str, str]:
    return {"Authorization": who["Authorization"]}


async def _room_with_member(
    http: httpx.AsyncClient, platform: Platform
) -> tuple[str, dict[str, str]]:
    boss = await _login(http, platform, SUPER_ADMIN_TELEGRAM_ID)
    created = await http.post(
        "/v1/rooms",
        json={"name": "Web room", "kind": "ROOM_KIND_TEXT_AND_VOICE"},
        headers=_auth(boss),
    )
    assert created.status_code == 200, created.text
    room_id: str = created.json()["room"]["id"]
    member = await _login(http, platform)
    joined = await http.post(f"/v1/rooms/{room_id}:join", json={}, headers=_auth(member))
    assert joined.status_code == 200, joined.text
    return room_id, member


async def test_rest_create_send_and_history(http: httpx.AsyncClient, platform: Platform) -> None:
    user = await _login(http, platform)
    refused = await http.post(
        "/v1/rooms", json={"name": "x", "kind": "ROOM_KIND_TEXT"}, headers=_auth(user)
    )
    assert refused.status_code == 403
    room_id, member = await _room_with_member(http, platform)
    key = uuid.uuid4().hex
    acks = []
    for _ in range(2):  # the retry returns the same ack
        sent = await http.post(
            f"/v1/rooms/{room_id}/messages",
            json={"idempotency_key": key, "text": "hello over REST"},
            headers=_auth(member),
        )
        assert sent.status_code == 200, sent.text
        acks.append(sent.json())
    assert acks[0] == acks[1]
    assert int(acks[0]["sequence"]) > 0
    empty = await http.post(
        f"/v1/rooms/{room_id}/messages",
        json={"idempotency_key": "k2", "text": "   "},
        headers=_auth(member),
    )
    assert empty.status_code == 400
    assert empty.json()["details"][0]["reason"] == "MESSAGE_EMPTY"
    history = await http.get(
        f"/v1/rooms/{room_id}/messages", params={"page_size": 10}, headers=_auth(member)
    )
    assert history.status_code == 200
    messages = history.json()["messages"]
    assert [m["text"] for m in messages] == ["hello over REST"]
    assert messages[0]["id"] == acks[0]["message_id"]
    members = await http.get(f"/v1/rooms/{room_id}/members", headers=_auth(member))
    assert len(members.json()["members"]) == 2
    stranger = await _login(http, platform)
    denied = await http.get(f"/v1/rooms/{room_id}/messages", headers=_auth(stranger))
    assert denied.status_code == 403
    assert denied.json()["details"][0]["reason"] == "NOT_A_MEMBER"


async def _ndjson(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.strip():
            yield json.loads(line)


def _kind(event: dict[str, Any]) -> str:
    """The oneof member of a RoomEvent in JSON form."""
    (kind,) = set(event) - {"sequence", "room_id", "time"}
    return kind


async def test_subscribe_streams_ndjson_with_resume(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    room_id, member = await _room_with_member(http, platform)
    first = await http.post(
        f"/v1/rooms/{room_id}/messages",
        json={"idempotency_key": "a1", "text": "stored before"},
        headers=_auth(member),
    )
    after = int(first.json()["sequence"]) - 1
    events: list[dict[str, Any]] = []
    async with http.stream(
        "POST",
        f"/v1/rooms/{room_id}:subscribe",
        json={"after_sequence": str(after)},
        headers=_auth(member),
    ) as stream:
        assert stream.status_code == 200
        async for line in _ndjson(stream):
            assert line["events"], line  # every response carries at least one event
            events.extend(line["events"])
            if any("synced" in e for e in line["events"]):
                await http.post(
                    f"/v1/rooms/{room_id}/messages",
                    json={"idempotency_key": "a2", "text": "live"},
                    headers=_auth(member),
                )
            if any(
                "message_new" in e and e["message_new"]["message"]["text"] == "live"
                for e in line["events"]
            ):
                break
    texts = [e["message_new"]["message"]["text"] for e in events if "message_new" in e]
    assert texts == ["stored before", "live"]
    assert "synced" in events[1]
    # GET works too (EventSource-style clients), and idle streams carry heartbeats.
    async with http.stream(
        "GET", f"/v1/rooms/{room_id}:subscribe", headers=_auth(member)
    ) as stream:
        assert stream.status_code == 200
        kinds: list[str] = []
        async with asyncio.timeout(10):
            async for line in _ndjson(stream):
                kinds.extend(_kind(e) for e in line["events"])
                if kinds.count("heartbeat") >= 2:
                    break
    assert kinds[0] == "synced"


async def test_subscribe_over_grpc_web(http: httpx.AsyncClient, platform: Platform) -> None:
    room_id, member = await _room_with_member(http, platform)
    request = pb.SubscribeRoomRequest(room_id=room_id)
    received: list[pb.RoomEvent] = []
    async with http.stream(
        "POST",
        "/switchboard.rooms.v1.RoomService/SubscribeRoom",
        content=encode_request(request.SerializeToString()),
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "authorization": member["Authorization"],
        },
    ) as stream:
        assert stream.status_code == 200
        buffer = b""
        async with asyncio.timeout(10):
            async for chunk in stream.aiter_bytes():
                buffer += chunk
                while len(buffer) >= 5:
                    flag, length = buffer[0], int.from_bytes(buffer[1:5], "big")
                    if len(buffer) < 5 + length:
                        break
                    payload, buffer = buffer[5 : 5 + length], buffer[5 + length :]
                    assert not flag & TRAILER_FLAG, payload
                    events = pb.SubscribeRoomResponse.FromString(payload).events
                    received.extend(events)
                    if any(e.WhichOneof("kind") == "synced" for e in events):
                        sent = await http.post(
                            f"/v1/rooms/{room_id}/messages",
                            json={"idempotency_key": "w1", "text": "to the browser"},
                            headers=_auth(member),
                        )
                        assert sent.status_code == 200
                if any(e.WhichOneof("kind") == "message_new" for e in received):
                    break
    message = next(e for e in received if e.WhichOneof("kind") == "message_new")
    assert message.message_new.message.text == "to the browser"
    assert message.message_new.message.sender_user_id == member["x-user-id"]

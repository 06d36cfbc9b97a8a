"""The callers: GetMe over gRPC (grpc.aio), and over REST through Envoy (httpx, raw HTTP/1.1).

Each caller makes one complete call per ``await caller()``, including decoding the answer
(protobuf for gRPC, JSON for REST), so both sides do the work a real client does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import grpc
import httpx
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.identity.v1 import identity_pb2_grpc as pb_grpc

from tests.support.telegram import signed_widget_payload

REST_PATH = "/v1/auth/me"
# grpc honours http_proxy/https_proxy even for loopback targets unless told not to.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


async def widget_login(
    channel: grpc.aio.Channel, bot_token: str, telegram_id: int, first_name: str
) -> pb.LoginWithTelegramWidgetResponse:
    """A Telegram Login Widget login signed with the login bot's token: the server's answer."""
    payload = signed_widget_payload(bot_token, telegram_id, first_name=first_name)
    response: pb.LoginWithTelegramWidgetResponse = await pb_grpc.AuthServiceStub(
        channel
    ).LoginWithTelegramWidget(pb.LoginWithTelegramWidgetRequest(**payload), timeout=30)
    return response


class Caller(Protocol):
    async def __call__(self) -> str:
        """One GetMe; returns the user id from the answer."""
        ...

    async def aclose(self) -> None: ...


class GrpcGetMe:
    """A bare grpc.aio channel (no client interceptor) and the generated stub."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._get_me = pb_grpc.AuthServiceStub(self.channel).GetMe
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._request = pb.GetMeRequest()

    async def __call__(self) -> str:
        response: pb.GetMeResponse = await self._get_me(self._request, metadata=self._metadata)
        return response.user.id

    async def aclose(self) -> None:
        await self.channel.close()


class HttpxGetMe:
    """httpx.AsyncClient, HTTP/1.1 keep-alive: what a Python consumer of the REST API uses."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=10.0
        )

    async def __call__(self) -> str:
        response = await self.client.get(REST_PATH)
        if response.status_code != 200:
            raise RuntimeError(f"GET {REST_PATH}: {response.status_code} {response.text[:200]}")
        body: dict[str, Any] = response.json()
        return str(body["user"]["id"])

    async def aclose(self) -> None:
        await self.client.aclose()


class RawHttpGetMe:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (the judged REST client).

    Takes the client library's own cost out of the REST figure, to show what Envoy and the
    transcoder cost by themselves; httpx is measured beside it for comparison.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host = host
        self.port = port
        self._request = (
            f"GET {REST_PATH} HTTP/1.1\r\nhost: {host}:{port}\r\n"
            f"authorization: Bearer {token}\r\naccept: application/json\r\n\r\n"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def __call__(self) -> str:
        reader, writer = await self._connection()
        writer.write(self._request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            raise RuntimeError(f"GET {REST_PATH}: response without length: {headers}")
        if status_line.split(" ", 2)[1] != "200":
            raise RuntimeError(f"GET {REST_PATH}: {status_line} {body[:200]!r}")
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return str(json.loads(body)["user"]["id"])

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
        self._reader = self._writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected: the empty line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)

"""Driving the booking bot as a Telegram user would, through the fake Bot API (shared by the
booking bot's integration tests and tests/e2e/test_booking_bot.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.booking.v1 import booking_pb2_grpc as pb_grpc

from tests.support.api import Api, Metadata, Session
from tests.support.fake_telegram import Call, FakeBotApi
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID

__all__ = ["ALL_DAY", "Chat", "Screen", "as_user", "make_master"]

#: Every day, all day: some slot is always free within hours, whenever the test runs.
ALL_DAY = [
    pb.WorkingHours(iso_weekday=day, start_time="00:00", end_time="24:00") for day in range(1, 8)
]

Expect = Callable[[str], bool]


@dataclass
class Screen:
    """One message of the bot as the user sees it (a new message or an edited one)."""

    message_id: int
    text: str
    method: str
    #: Inline buttons: rows of (label, callback data).
    buttons: list[list[tuple[str, str]]] = field(default_factory=list)
    #: Reply keyboard: rows of labels.
    keyboard: list[list[str]] = field(default_factory=list)

    @classmethod
    def of(cls, call: Call) -> Screen:
        markup: dict[str, Any] = call.params.get("reply_markup") or {}
        inline = [
            [(str(b["text"]), str(b.get("callback_data", ""))) for b in row]
            for row in markup.get("inline_keyboard", [])
        ]
        keyboard = [[str(b["text"]) for b in row] for row in markup.get("keyboard", [])]
        message_id = int(call.params.get("message_id") or call.response["message_id"])
        return cls(message_id, str(call.params["text"]), call.method, inline, keyboard)

    @property
    def labels(self) -> list[str]:
        return [label for row in self.buttons for label, _ in row]

    def data(self, match: str | Callable[[str], bool]) -> str:
        """The callback data of the first button whose label is `match` (or matches it)."""
        check = match if callable(match) else (lambda label: label == match)
        for row in self.buttons:
            for label, data in row:
                if check(label):
                    return data
        raise AssertionError(f"no button {match!r} in {self.labels!r} under {self.text!r}")


class Chat:
    """A private chat of one Telegram user with the bot `token`."""

    def __init__(
        self, fake: FakeBotApi, token: str, user_id: int, *, language_code: str = "ru"
    ) -> None:
        self.fake = fake
        self.token = token
        self.user_id = user_id
        self.language_code = language_code

    def _mine(self, call: Call, methods: tuple[str, ...]) -> bool:
        return (
            call.ok
            and call.token == self.token
            and call.method.lower() in methods
            and str(call.params.get("chat_id")) == str(self.user_id)
        )

    async def wait(
        self,
        since: int,
        expect: Expect | None = None,
        *,
        methods: tuple[str, ...] = ("sendmessage", "editmessagetext"),
        timeout: float = 10,
    ) -> Screen:
        """The first bot message (sent or edited) from call `since` on whose text `expect`s."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self.fake.calls[since:]:
                if self._mine(call, methods) and (
                    expect is None or expect(str(call.params["text"]))
                ):
                    return Screen.of(call)
            if time.monotonic() > deadline:
                seen = [
                    c.params.get("text") for c in self.fake.calls[since:] if self._mine(c, methods)
                ]
                raise TimeoutError(f"no matching message in chat {self.user_id}; seen {seen!r}")
            await asyncio.sleep(0.02)

    async def send(self, text: str, expect: Expect | None = None, timeout: float = 10) -> Screen:
        mark = self.fake.mark()
        await self.fake.user_sends(self.token, self.user_id, text, language_code=self.language_code)
        return await self.wait(mark, expect, timeout=timeout)

    async def press_raw(self, message_id: int, data: str) -> tuple[int, str]:
        """Presses a button; returns (the call mark, the callback query id)."""
        mark = self.fake.mark()
        update = await self.fake.user_presses(
            self.token, self.user_id, message_id, data, language_code=self.language_code
        )
        return mark, str(update["callback_query"]["id"])

    async def press(
        self,
        screen: Screen,
        match: str | Callable[[str], bool],
        expect: Expect | None = None,
        timeout: float = 10,
    ) -> Screen:
        mark, _ = await self.press_raw(screen.message_id, screen.data(match))
        return await self.wait(mark, expect, timeout=timeout)

    async def alert(self, screen: Screen, data: str, timeout: float = 10) -> str:
        """Presses a button (by its data) and returns the alert the bot answers with."""
        mark, query_id = await self.press_raw(screen.message_id, data)
        call = await self.fake.wait_for_call(
            "answerCallbackQuery",
            lambda c: c.params.get("callback_query_id") == query_id and bool(c.params.get("text")),
            timeout=timeout,
            since=mark,
        )
        assert call.params.get("show_alert") is True, call.params
        return str(call.params["text"])


def as_user(api: Api, telegram_id: int) -> Metadata:
    """Metadata acting as a Telegram user, as the booking bot does."""
    return api.service(api.secrets.booking_bot_service_token, act_as=telegram_id)


async def make_master(
    api: Api, telegram_id: int, name: str, working_hours: list[pb.WorkingHours] | None = None
) -> tuple[pb.Master, Session]:
    """A platform user (Telegram login) made a master by the super admin."""
    admin = await api.login(SUPER_ADMIN_TELEGRAM_ID, name="Admin")
    user = await api.login(telegram_id, name=name)
    stub = pb_grpc.BookingAdminServiceStub(api.channel)
    created = await stub.CreateMaster(
        pb.CreateMasterRequest(
            user_id=user.user.id,
            display_name=name,
            working_hours=ALL_DAY if working_hours is None else working_hours,
            request_id=str(uuid.uuid4()),
        ),
        metadata=admin.metadata,
    )
    return created.master, user


async def client_bookings(api: Api, telegram_id: int) -> list[pb.Booking]:
    stub = pb_grpc.BookingServiceStub(api.channel)
    listed = await stub.ListBookings(
        pb.ListBookingsRequest(view=pb.BOOKING_VIEW_CLIENT, include_cancelled=True),
        metadata=as_user(api, telegram_id),
    )
    return list(listed.bookings)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    """The error of an awaitable gRPC call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")

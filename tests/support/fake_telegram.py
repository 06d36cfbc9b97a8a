"""A fake Telegram Bot API server for tests (aiohttp on 127.0.0.1, a random free port).

Point aiogram (or anything speaking the Bot API) at :attr:`FakeBotApi.base_url`::

    fake = FakeBotApi()
    await fake.start()
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url, is_local=True))
    bot = Bot(token, session=session)
    ...
    await fake.stop()

It answers ``POST|GET /bot<token>/<method>`` like Telegram (``{"ok": true, "result": ...}``),
records every call (:attr:`FakeBotApi.calls`, with a monotonic timestamp so rate tests can check
the spacing), injects errors on demand (:meth:`FakeBotApi.fail_next`, :meth:`FakeBotApi.block_chat`)
and serves updates that a test enqueues as a user would act (:meth:`FakeBotApi.user_sends`,
:meth:`FakeBotApi.user_presses`) through ``getUpdates`` (offset confirmation, long poll with
``timeout``).

Parameters are decoded the way Telegram reads them: form fields (urlencoded or multipart),
JSON bodies and query strings are accepted; scalar values that aiogram JSON-encodes (``chat_id``
"42", ``show_alert`` "true", ``reply_markup`` '{...}') come back as Python values, while text
fields (``text``, ``caption``, ``data``, ...) always stay strings.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from server.devstack.embedded import free_port

__all__ = ["Call", "Failure", "FakeBotApi"]

# Fields Telegram reads as strings: never JSON-decoded (a text "123" stays "123").
_TEXT_FIELDS = frozenset(
    {
        "text",
        "caption",
        "data",
        "callback_query_id",
        "inline_message_id",
        "parse_mode",
        "url",
        "secret_token",
        "ip_address",
        "language_code",
        "description",
        "short_description",
        "name",
        "title",
        "query",
        "action",
        "emoji",
        "certificate",
    }
)

_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
    500: "Internal Server Error",
}

Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class Call:
    """One recorded Bot API request."""

    token: str
    method: str
    params: dict[str, Any]
    #: time.monotonic() when the request arrived.
    time: float = 0.0
    #: The HTTP status the fake answered (200, or an injected error's).
    status: int = 200
    #: What the fake answered: ``result`` when ok (e.g. the sent Message), else the error body.
    response: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass
class Failure:
    """An injected error: the next `times` calls of `method` (for `chat_id`, if given) fail."""

    method: str
    status: int = 429
    retry_after: int = 1
    times: int = 1
    chat_id: int | str | None = None
    description: str | None = None

    def matches(self, method: str, params: Mapping[str, Any]) -> bool:
        if self.times <= 0 or self.method.lower() != method.lower():
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)

    def body(self) -> dict[str, Any]:
        if self.status == 429:
            return {
                "ok": False,
                "error_code": 429,
                "description": self.description
                or f"Too Many Requests: retry after {self.retry_after}",
                "parameters": {"retry_after": self.retry_after},
            }
        return {
            "ok": False,
            "error_code": self.status,
            "description": self.description or _DESCRIPTIONS.get(self.status, "Bad Request"),
        }


@dataclass
class _BotState:
    """Per-token state: the update queue and the webhook."""

    token: str
    username: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1
    webhook_url: str = ""
    webhook_secret: str = ""
    commands: list[Any] = field(default_factory=list)
    #: The last non-empty allowed_updates of getUpdates/setWebhook (empty: everything).
    allowed_updates: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def bot_id(self) -> int:
        prefix = self.token.split(":", 1)[0]
        return int(prefix) if prefix.isdigit() else 1


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotApi:
    """The fake Bot API server; see the module docstring."""

    def __init__(self, *, usernames: Mapping[str, str] | None = None) -> None:
        #: Optional bot usernames by token (default: ``test<bot id>_bot``).
        self.usernames = dict(usernames or {})
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self.blocked_chats: set[str] = set()
        self.revoked_tokens: set[str] = set()
        self.host = "127.0.0.1"
        self.port = 0
        self._bots: dict[str, _BotState] = {}
        self._messages: dict[tuple[str, int], dict[str, Any]] = {}  # (token, message_id) -> msg
        self._message_ids: dict[str, itertools.count[int]] = {}  # per chat
        self._callback_ids = itertools.count(1)
        self._sent = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API base for ``SWITCHBOARD_TELEGRAM_API_BASE`` / ``TelegramAPIServer.from_base``."""
        if not self.port:
            raise RuntimeError("FakeBotApi is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeBotApi:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        last_error: OSError | None = None
        for _ in range(5):
            port = free_port()
            site = web.TCPSite(self._runner, self.host, port)
            try:
                await site.start()
            except OSError as exc:  # the port was taken between the probe and the bind
                last_error = exc
                continue
            self.port = port
            return self
        raise RuntimeError(f"FakeBotApi could not bind a port: {last_error}")

    async def stop(self) -> None:
        self._stopping = True
        for state in self._bots.values():
            async with state.changed:
                state.changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- inspection --------------------------------------------------------------------------

    def calls_of(self, method: str, *, token: str | None = None) -> list[Call]:
        """Recorded calls of `method` (case-insensitive), optionally of one bot."""
        return [
            c
            for c in self.calls
            if c.method.lower() == method.lower() and (token is None or c.token == token)
        ]

    def mark(self) -> int:
        """The number of calls so far: pass it as ``since=`` to look only at later calls."""
        return len(self.calls)

    def sent_messages(
        self, chat_id: int | str | None = None, *, token: str | None = None, since: int = 0
    ) -> list[dict[str, Any]]:
        """The params of every successful sendMessage (to `chat_id`, if given)."""
        return [
            c.params
            for c in self.calls[since:]
            if c.ok
            and c.method.lower() == "sendmessage"
            and (chat_id is None or str(c.params.get("chat_id")) == str(chat_id))
            and (token is None or c.token == token)
        ]

    async def wait_for_message(
        self,
        chat_id: int | str,
        predicate: Predicate | None = None,
        timeout: float = 5,
        *,
        token: str | None = None,
        since: int = 0,
    ) -> dict[str, Any]:
        """The params of the first successful sendMessage to `chat_id` (among calls from index
        `since` on) matching `predicate`, waiting up to `timeout` seconds for it to arrive."""

        def find() -> dict[str, Any] | None:
            for params in self.sent_messages(chat_id, token=token, since=since):
                if predicate is None or predicate(params):
                    return params
            return None

        try:
            async with asyncio.timeout(timeout):
                async with self._sent:
                    while (found := find()) is None:
                        await self._sent.wait()
                    return found
        except TimeoutError:
            texts = [p.get("text") for p in self.sent_messages(chat_id, token=token, since=since)]
            raise TimeoutError(
                f"no matching message to chat {chat_id} within {timeout}s; sent there: {texts!r}"
            ) from None

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5,
        *,
        since: int = 0,
    ) -> Call:
        """The first recorded call of `method` (from index `since`) matching `predicate`."""

        def find() -> Call | None:
            for call in self.calls[since:]:
                if call.method.lower() == method.lower() and (predicate is None or predicate(call)):
                    return call
            return None

        try:
            async with asyncio.timeout(timeout):
                async with self._sent:
                    while (found := find()) is None:
                        await self._sent.wait()
                    return found
        except TimeoutError:
            raise TimeoutError(f"no matching {method} call within {timeout}s") from None

    # -- error injection ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        chat_id: int | str | None = None,
        description: str | None = None,
    ) -> Failure:
        """The next `times` calls of `method` (to `chat_id`, if given) answer `status`: 429 with
        ``parameters.retry_after``, 400 "Bad Request: chat not found", 403 "Forbidden: bot was
        blocked by the user" (or `description`)."""
        failure = Failure(method, status, retry_after, times, chat_id, description)
        self.failures.append(failure)
        return failure

    def block_chat(self, chat_id: int | str) -> None:
        """Every later call addressed to `chat_id` answers 403 "bot was blocked by the user"."""
        self.blocked_chats.add(str(chat_id))

    def unblock_chat(self, chat_id: int | str) -> None:
        self.blocked_chats.discard(str(chat_id))

    def revoke_token(self, token: str) -> None:
        """Every later call with `token` answers 401 "Unauthorized" (a revoked or wrong token)."""
        self.revoked_tokens.add(token)

    # -- the user side -----------------------------------------------------------------------

    def _bot(self, token: str) -> _BotState:
        state = self._bots.get(token)
        if state is None:
            state = _BotState(token, "")
            state.username = self.usernames.get(token, f"test{state.bot_id}_bot")
            self._bots[token] = state
        return state

    def _next_message_id(self, chat_id: int | str) -> int:
        counter = self._message_ids.setdefault(str(chat_id), itertools.count(1))
        return next(counter)

    @staticmethod
    def _user(user_id: int, language_code: str | None, first_name: str) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language_code:
            user["language_code"] = language_code
        return user

    async def _enqueue(self, token: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        state = self._bot(token)
        update = {"update_id": state.next_update_id, kind: payload}
        state.next_update_id += 1
        async with state.changed:
            state.updates.append(update)
            state.changed.notify_all()
        return update

    async def user_sends(
        self,
        token: str,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        language_code: str | None = "en",
        *,
        first_name: str = "Test",
    ) -> dict[str, Any]:
        """A user writes `text` in the private chat `chat_id` with bot `token`: enqueues a
        ``message`` update (``user_id`` defaults to `chat_id`, as in a private chat). Returns the
        update."""
        uid = chat_id if user_id is None else user_id
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "from": self._user(uid, language_code, first_name),
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return await self._enqueue(token, "message", message)

    async def user_presses(
        self,
        token: str,
        chat_id: int,
        message_id: int,
        data: str,
        user_id: int | None = None,
        language_code: str | None = "en",
        *,
        first_name: str = "Test",
    ) -> dict[str, Any]:
        """A user presses an inline button with callback `data` under the bot's message
        `message_id` in chat `chat_id`: enqueues a ``callback_query`` update. Returns it."""
        uid = chat_id if user_id is None else user_id
        message = self._messages.get((token, message_id)) or {
            "message_id": message_id,
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": "",
        }
        query = {
            "id": str(next(self._callback_ids)),
            "from": self._user(uid, language_code, first_name),
            "message": message,
            "chat_instance": str(chat_id),
            "data": data,
        }
        return await self._enqueue(token, "callback_query", query)

    # -- the server side ---------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    raw.update(body)
                return {k: _decode(k, v) for k, v in raw.items()}
            if request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, BodyPartReader):
                        continue
                    name = part.name or ""
                    if part.filename:
                        raw[name] = {"filename": part.filename, "size": len(await part.read())}
                    else:
                        raw[name] = await part.text()
            else:
                raw.update(await request.post())
        return {k: _decode(k, v) for k, v in raw.items()}

    async def _record(self, call: Call) -> None:
        async with self._sent:
            self.calls.append(call)
            self._sent.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(token, method, params, time.monotonic())
        status, body = await self._answer(token, method, params)
        call.status = status
        call.response = body.get("result") if status == 200 else body
        await self._record(call)
        return web.json_response(body, status=status)

    def _injected(self, method: str, params: Mapping[str, Any]) -> Failure | None:
        chat = params.get("chat_id")
        if chat is not None and str(chat) in self.blocked_chats:
            return Failure(method, status=403)
        for failure in self.failures:
            if failure.matches(method, params):
                failure.times -= 1
                return failure
        return None

    async def _answer(
        self, token: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if ":" not in token or token in self.revoked_tokens:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        failure = self._injected(method, params)
        if failure is not None:
            return failure.status, failure.body()
        state = self._bot(token)
        name = method.lower()
        if name == "getupdates":
            if state.webhook_url:
                return 409, {"ok": False, "error_code": 409, "description": _DESCRIPTIONS[409]}
            return 200, {"ok": True, "result": await self._get_updates(state, params)}
        handler = _HANDLERS.get(name)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        try:
            result = handler(self, state, params)
        except _ApiError as exc:
            return exc.status, {"ok": False, "error_code": exc.status, "description": exc.text}
        return 200, {"ok": True, "result": result}

    async def _get_updates(self, state: _BotState, params: Mapping[str, Any]) -> list[Any]:
        offset = int(params.get("offset") or 0)
        limit = max(1, min(int(params.get("limit") or 100), 100))
        timeout = max(0.0, float(params.get("timeout") or 0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        allowed = params.get("allowed_updates")
        async with state.changed:
            if isinstance(allowed, list) and allowed:
                state.allowed_updates = [str(kind) for kind in allowed]
            if offset:
                state.updates = [u for u in state.updates if u["update_id"] >= offset]
            while not self._deliverable(state) and not self._stopping:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await state.changed.wait()
                except TimeoutError:
                    break
            return list(state.updates[:limit])

    @staticmethod
    def _deliverable(state: _BotState) -> bool:
        """Drops queued updates of kinds the bot did not ask for (as Telegram does); True when
        something is left to deliver."""
        if state.allowed_updates:
            state.updates = [u for u in state.updates if any(k in u for k in state.allowed_updates)]
        return bool(state.updates)

    # -- method implementations (sync: state only) -------------------------------------------

    def _bot_user(self, state: _BotState) -> dict[str, Any]:
        return {
            "id": state.bot_id,
            "is_bot": True,
            "first_name": state.username,
            "username": state.username,
        }

    def _new_message(self, state: _BotState, params: Mapping[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if chat_id is None or params.get("text") in (None, ""):
            raise _ApiError(400, "Bad Request: message text is empty")
        chat_value = int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_value),
            "from": self._bot_user(state),
            "chat": {"id": chat_value, "type": "private"},
            "date": int(time.time()),
            "text": params["text"],
        }
        markup = params.get("reply_markup")
        # Like Telegram, a Message carries only an inline keyboard (a reply keyboard, or its
        # removal, is not echoed back).
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._messages[(state.token, message["message_id"])] = message
        return message

    def _edit_message(self, state: _BotState, params: Mapping[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        try:
            message_id = int(params["message_id"])
        except (KeyError, TypeError, ValueError):
            raise _ApiError(400, "Bad Request: message identifier is not specified") from None
        message = self._messages.get((state.token, message_id))
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if "text" in params:
            message["text"] = params["text"]
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        message["edit_date"] = int(time.time())
        return message

    def _delete_message(self, state: _BotState, params: Mapping[str, Any]) -> Any:
        try:
            message_id = int(params["message_id"])
        except (KeyError, TypeError, ValueError):
            raise _ApiError(400, "Bad Request: message identifier is not specified") from None
        if self._messages.pop((state.token, message_id), None) is None:
            raise _ApiError(400, "Bad Request: message to delete not found")
        return True

    def _set_webhook(self, state: _BotState, params: Mapping[str, Any]) -> Any:
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list) and allowed:
            state.allowed_updates = [str(kind) for kind in allowed]
        state.webhook_url = str(params.get("url") or "")
        state.webhook_secret = str(params.get("secret_token") or "")
        if params.get("drop_pending_updates"):
            state.updates.clear()
        return True

    def _delete_webhook(self, state: _BotState, params: Mapping[str, Any]) -> Any:
        state.webhook_url = state.webhook_secret = ""
        if params.get("drop_pending_updates"):
            state.updates.clear()
        return True

    def _webhook_info(self, state: _BotState, params: Mapping[str, Any]) -> Any:
        return {
            "url": state.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(state.updates),
        }

    def _set_commands(self, state: _BotState, params: Mapping[str, Any]) -> Any:
        commands = params.get("commands")
        state.commands = commands if isinstance(commands, list) else []
        return True


class _ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _true(fake: FakeBotApi, state: _BotState, params: Mapping[str, Any]) -> Any:
    return True


_HANDLERS: dict[str, Callable[[FakeBotApi, _BotState, Mapping[str, Any]], Any]] = {
    "getme": lambda fake, state, params: (
        fake._bot_user(state)
        | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
    ),
    "sendmessage": FakeBotApi._new_message,
    "editmessagetext": FakeBotApi._edit_message,
    "editmessagereplymarkup": FakeBotApi._edit_message,
    "deletemessage": FakeBotApi._delete_message,
    "answercallbackquery": _true,
    "sendchataction": _true,
    "setmycommands": FakeBotApi._set_commands,
    "deletemycommands": _true,
    "getmycommands": lambda fake, state, params: state.commands,
    "setwebhook": FakeBotApi._set_webhook,
    "deletewebhook": FakeBotApi._delete_webhook,
    "getwebhookinfo": FakeBotApi._webhook_info,
    "close": _true,
    "logout": _true,
}

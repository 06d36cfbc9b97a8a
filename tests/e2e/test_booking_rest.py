"""The booking API as REST through Envoy, with sessions from the Telegram login, against the
real server, PostgreSQL and Redis: every path a web client uses, and the error JSON."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import Platform
from tests.support.api import next_telegram_id
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID
from tests.support.telegram import signed_widget_payload

Json = dict[str, Any]

# Every day of the week, 10:00-20:00 (default lunch 13:00-14:00): tests do not depend on today.
EVERY_DAY = [
    {"iso_weekday": day, "start_time": "10:00", "end_time": "20:00"} for day in range(1, 8)
]


async def _login(http: httpx.AsyncClient, platform: Platform, name: str, tg: int = 0) -> Json:
    payload = signed_widget_payload(
        platform.secrets.login_bot_token, tg or next_telegram_id(), first_name=name
    )
    response = await http.post("/v1/auth/telegram/login", json=payload)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    platform.secrets.issued.append(body["session"]["token"])
    return body


def _auth(session: Json) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['session']['token']}"}


def _reason(response: httpx.Response) -> str:
    """The ErrorInfo reason of a refusal (the google.rpc.Status JSON Envoy returns)."""
    body = response.json()
    infos = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert infos, body
    reason: str = infos[0]["reason"]
    return reason


def _ok(response: httpx.Response) -> Json:
    assert response.status_code == 200, (response.status_code, response.text)
    body: Json = response.json()
    return body


class Shop:
    """A fresh master (every day 10-20) made over REST by the super admin."""

    def __init__(self, http: httpx.AsyncClient, platform: Platform) -> None:
        self.http = http
        self.platform = platform

    async def setup(self) -> Shop:
        self.admin = await _login(self.http, self.platform, "Boss", SUPER_ADMIN_TELEGRAM_ID)
        self.master_user = await _login(self.http, self.platform, "Мастер")
        created = await self.http.post(
            "/v1/admin/booking/masters",
            json={
                "user_id": self.master_user["user"]["id"],
                "display_name": f"Мастер {uuid.uuid4().hex[:6]}",
                "working_hours": EVERY_DAY,
                "request_id": str(uuid.uuid4()),
            },
            headers=_auth(self.admin),
        )
        self.master: Json = _ok(created)["master"]
        me = _ok(await self.http.get("/v1/booking/me", headers=_auth(self.master_user)))
        self.tz = ZoneInfo(me["time_zone"])
        return self

    def day(self, ahead: int) -> str:
        return (datetime.now(self.tz).date() + timedelta(days=ahead)).isoformat()

    async def slots(self, day: str, session: Json, service: str = "haircut") -> dict[str, str]:
        """local "HH:MM" -> start_time (RFC 3339) of the free slots of that day."""
        body = _ok(
            await self.http.get(
                f"/v1/booking/masters/{self.master['id']}/availability",
                params={"start_date": day, "end_date": day, "service_id": service},
                headers=_auth(session),
            )
        )
        [only] = body["days"]
        assert only["date"] == day
        return {s["local_time"]: s["start_time"] for s in only.get("slots", [])}

    async def book(self, session: Json, start: str, request_id: str = "") -> httpx.Response:
        return await self.http.post(
            "/v1/booking/bookings",
            json={
                "master_id": self.master["id"],
                "service_id": "haircut",
                "start_time": start,
                "request_id": request_id or str(uuid.uuid4()),
            },
            headers=_auth(session),
        )


@pytest.fixture
async def shop(http: httpx.AsyncClient, platform: Platform) -> Shop:
    return await Shop(http, platform).setup()


async def test_client_lists_masters_books_a_free_slot_and_cancels(
    http: httpx.AsyncClient, platform: Platform, shop: Shop
) -> None:
    client = await _login(http, platform, "Иван")
    masters = _ok(await http.get("/v1/booking/masters", headers=_auth(client)))["masters"]
    assert shop.master["id"] in {m["id"] for m in masters}
    one = _ok(await http.get(f"/v1/booking/masters/{shop.master['id']}", headers=_auth(client)))
    assert one["master"]["lunch"] == {"start_time": "13:00", "end_time": "14:00"}
    services = _ok(await http.get("/v1/booking/services", headers=_auth(client)))["services"]
    assert [s["id"] for s in services][:3] == ["haircut", "beard", "haircut_beard"]

    day = shop.day(5)
    slots = await shop.slots(day, client)
    assert list(slots) == [f"{h:02d}:00" for h in (10, 11, 12, 14, 15, 16, 17, 18, 19)]
    rid = str(uuid.uuid4())
    booking = _ok(await shop.book(client, slots["15:00"], rid))["booking"]
    assert booking["status"] == "BOOKING_STATUS_ACTIVE"
    assert booking["source"] == "BOOKING_SOURCE_CLIENT"
    assert booking["local_start"] == f"{day} 15:00"
    assert booking["client_user_id"] == client["user"]["id"]
    assert booking["master_display_name"] == shop.master["display_name"]
    # A retry with the same request id is the same booking; the slot is gone for others.
    assert _ok(await shop.book(client, slots["15:00"], rid))["booking"]["id"] == booking["id"]
    assert "15:00" not in await shop.slots(day, client)

    mine = _ok(await http.get("/v1/booking/bookings", headers=_auth(client)))["bookings"]
    assert [b["id"] for b in mine] == [booking["id"]]
    got = _ok(await http.get(f"/v1/booking/bookings/{booking['id']}", headers=_auth(client)))
    assert got["booking"]["id"] == booking["id"]
    profile = _ok(await http.get("/v1/booking/me", headers=_auth(client)))
    assert profile["active_booking"]["id"] == booking["id"]
    assert "master" not in profile

    cancelled = _ok(
        await http.post(
            f"/v1/booking/bookings/{booking['id']}/cancel", json={}, headers=_auth(client)
        )
    )["booking"]
    assert cancelled["status"] == "BOOKING_STATUS_CANCELLED"
    assert cancelled["cancelled_by"] == "BOOKING_ACTOR_CLIENT"
    assert "15:00" in await shop.slots(day, client)
    # Cancelling again is safe to retry.
    again = await http.post(
        f"/v1/booking/bookings/{booking['id']}/cancel", json={}, headers=_auth(client)
    )
    assert _ok(again)["booking"]["status"] == "BOOKING_STATUS_CANCELLED"
    listed = _ok(
        await http.get(
            "/v1/booking/bookings", params={"include_cancelled": "true"}, headers=_auth(client)
        )
    )
    assert [b["status"] for b in listed["bookings"]] == ["BOOKING_STATUS_CANCELLED"]


async def test_refusals_are_json_with_their_reason(
    http: httpx.AsyncClient, platform: Platform, shop: Shop
) -> None:
    first = await _login(http, platform, "A")
    second = await _login(http, platform, "B")
    stranger = await _login(http, platform, "C")
    day = shop.day(6)
    slots = await shop.slots(day, first)
    booking = _ok(await shop.book(first, slots["10:00"]))["booking"]

    taken = await shop.book(second, slots["10:00"])
    assert taken.status_code == 409
    body = taken.json()
    assert body["code"] == 6  # ALREADY_EXISTS
    info = next(d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "SLOT_TAKEN"
    assert info["domain"] == "booking.switchboard.dev"

    twice = await shop.book(first, slots["11:00"])
    assert twice.status_code == 400
    assert _reason(twice) == "ACTIVE_BOOKING_EXISTS"

    off_grid = await shop.book(second, slots["11:00"].replace(":00:00", ":30:00"))
    assert off_grid.status_code == 400
    assert _reason(off_grid) == "SLOT_UNAVAILABLE"

    unknown = await http.get(
        f"/v1/booking/masters/{uuid.uuid4()}/availability",
        params={"start_date": day},
        headers=_auth(first),
    )
    assert unknown.status_code == 404
    assert _reason(unknown) == "MASTER_NOT_FOUND"

    not_yours = await http.post(
        f"/v1/booking/bookings/{booking['id']}/cancel", json={}, headers=_auth(stranger)
    )
    assert not_yours.status_code == 403
    assert _reason(not_yours) == "NOT_YOUR_BOOKING"
    peek = await http.get(f"/v1/booking/bookings/{booking['id']}", headers=_auth(stranger))
    assert peek.status_code == 403
    assert _reason(peek) == "NOT_YOUR_BOOKING"
    # Refused attempts are audited (readable by the admin over REST too).
    events = _ok(
        await http.get(
            "/v1/admin/audit-events",
            params={"action": "access.denied", "page_size": 200},
            headers=_auth(shop.admin),
        )
    )["events"]
    denied = [e for e in events if e["target"] == f"booking:{booking['id']}"]
    assert len(denied) >= 2, events[:5]
    missing = await http.get(f"/v1/booking/bookings/{uuid.uuid4()}", headers=_auth(stranger))
    assert missing.status_code == 404
    assert _reason(missing) == "BOOKING_NOT_FOUND"

    no_session = await http.get("/v1/booking/masters")
    assert no_session.status_code == 401

    bad = await http.get(
        f"/v1/booking/masters/{shop.master['id']}/availability",
        params={"start_date": "25.11.2026"},
        headers=_auth(first),
    )
    assert bad.status_code == 400
    violations = next(
        d for d in bad.json()["details"] if d["@type"].endswith("google.rpc.BadRequest")
    )
    assert [v["field"] for v in violations["field_violations"]] == ["start_date"]

    # A client is not a master: the master view and the master's paths are refused.
    view = await http.get(
        "/v1/booking/bookings", params={"view": "BOOKING_VIEW_MASTER"}, headers=_auth(first)
    )
    assert view.status_code == 403
    assert _reason(view) == "NOT_A_MASTER"
    for method, path, payload in [
        ("GET", "/v1/booking/master/days-off", None),
        ("POST", "/v1/booking/master/days-off", {"date": day}),
        ("PUT", "/v1/booking/master/lunch", {"clear": True}),
    ]:
        refused = await http.request(method, path, json=payload, headers=_auth(first))
        assert refused.status_code == 403, (path, refused.text)


async def test_master_schedule_days_off_lunch_and_manual_bookings(
    http: httpx.AsyncClient, platform: Platform, shop: Shop
) -> None:
    master = shop.master_user
    client = await _login(http, platform, "Пётр")
    day = shop.day(8)
    slots = await shop.slots(day, client)
    booking = _ok(await shop.book(client, slots["12:00"]))["booking"]

    profile = _ok(await http.get("/v1/booking/me", headers=_auth(master)))
    assert profile["master"]["id"] == shop.master["id"]
    schedule = _ok(
        await http.get(
            "/v1/booking/bookings",
            params={"view": "BOOKING_VIEW_MASTER", "start_date": day, "end_date": day},
            headers=_auth(master),
        )
    )["bookings"]
    assert [(b["id"], b["client_name"]) for b in schedule] == [(booking["id"], "Пётр")]

    # Manual booking for someone who phoned: any start inside working hours.
    manual = _ok(
        await http.post(
            "/v1/booking/master/bookings",
            json={
                "service_id": "beard",
                "start_time": slots["16:00"].replace(":00:00", ":30:00"),
                "client_name": "Сергей",
                "client_phone": "+7 900 000-00-00",
                "request_id": str(uuid.uuid4()),
            },
            headers=_auth(master),
        )
    )["booking"]
    assert manual["source"] == "BOOKING_SOURCE_MANUAL"
    assert manual["client_phone"] == "+7 900 000-00-00"
    assert manual["local_start"] == f"{day} 16:30"
    free = await shop.slots(day, client)
    assert "16:00" not in free  # 16:00-17:00 overlaps 16:30-17:30
    assert "17:00" not in free

    # A day with bookings cannot be a day off; cancelling needs a reason from the master.
    refused = await http.post(
        "/v1/booking/master/days-off", json={"date": day}, headers=_auth(master)
    )
    assert refused.status_code == 400
    assert _reason(refused) == "DAY_HAS_BOOKINGS"
    no_reason = await http.post(
        f"/v1/booking/bookings/{booking['id']}/cancel", json={}, headers=_auth(master)
    )
    assert no_reason.status_code == 400
    assert _reason(no_reason) == "CANCEL_REASON_REQUIRED"
    cancelled = _ok(
        await http.post(
            f"/v1/booking/bookings/{booking['id']}/cancel",
            json={"reason": "Заболел"},
            headers=_auth(master),
        )
    )["booking"]
    assert cancelled["cancelled_by"] == "BOOKING_ACTOR_MASTER"
    assert cancelled["cancel_reason"] == "Заболел"

    # Days off: set, listed, shown in availability, removed.
    off_day = shop.day(9)
    set_off = _ok(
        await http.post(
            "/v1/booking/master/days-off",
            json={"date": off_day, "note": "отпуск"},
            headers=_auth(master),
        )
    )
    assert set_off["day_off"] == {"date": off_day, "note": "отпуск"}
    listed = _ok(await http.get("/v1/booking/master/days-off", headers=_auth(master)))
    assert {"date": off_day, "note": "отпуск"} in listed["days_off"]
    availability = _ok(
        await http.get(
            f"/v1/booking/masters/{shop.master['id']}/availability",
            params={"start_date": off_day},
            headers=_auth(client),
        )
    )
    assert availability["days"][0]["day_off"] is True
    assert not availability["days"][0].get("slots")
    _ok(await http.delete(f"/v1/booking/master/days-off/{off_day}", headers=_auth(master)))
    assert await shop.slots(off_day, client)

    # Lunch moved to 15:00-16:00: 13:00 is free again and 15:00 is not, at once.
    lunch = _ok(
        await http.put(
            "/v1/booking/master/lunch",
            json={"lunch": {"start_time": "15:00", "end_time": "16:00"}},
            headers=_auth(master),
        )
    )
    assert lunch["master"]["lunch"] == {"start_time": "15:00", "end_time": "16:00"}
    free = await shop.slots(off_day, client)
    assert "13:00" in free
    assert "15:00" not in free


async def test_admin_creates_and_updates_masters_with_an_update_mask(
    http: httpx.AsyncClient, platform: Platform, shop: Shop
) -> None:
    admin = shop.admin
    user = await _login(http, platform, "Новый")
    rid = str(uuid.uuid4())
    payload = {"user_id": user["user"]["id"], "display_name": "Новый мастер", "request_id": rid}
    created = _ok(await http.post("/v1/admin/booking/masters", json=payload, headers=_auth(admin)))
    master = created["master"]
    # Default hours: Monday to Saturday, 10:00-20:00.
    assert [h["iso_weekday"] for h in master["working_hours"]] == [1, 2, 3, 4, 5, 6]
    again = _ok(await http.post("/v1/admin/booking/masters", json=payload, headers=_auth(admin)))
    assert again["master"]["id"] == master["id"]
    exists = await http.post(
        "/v1/admin/booking/masters",
        json={**payload, "request_id": str(uuid.uuid4())},
        headers=_auth(admin),
    )
    assert exists.status_code == 409
    assert _reason(exists) == "MASTER_EXISTS"

    updated = _ok(
        await http.patch(
            f"/v1/admin/booking/masters/{master['id']}",
            params={"update_mask": "display_name,working_hours"},
            json={
                "display_name": "Переименован",
                "working_hours": [{"iso_weekday": 7, "start_time": "09:00", "end_time": "12:00"}],
                "active": False,  # not in the mask: ignored
            },
            headers=_auth(admin),
        )
    )["master"]
    assert updated["display_name"] == "Переименован"
    assert updated["working_hours"] == [
        {"iso_weekday": 7, "start_time": "09:00", "end_time": "12:00"}
    ]
    assert updated["active"] is True
    deactivated = _ok(
        await http.patch(
            f"/v1/admin/booking/masters/{master['id']}",
            params={"update_mask": "active"},
            json={"active": False},
            headers=_auth(admin),
        )
    )["master"]
    assert deactivated.get("active", False) is False
    everyone = _ok(
        await http.get("/v1/admin/booking/masters", params={"page_size": 200}, headers=_auth(admin))
    )
    assert master["id"] in {m["id"] for m in everyone["masters"]}
    visible = _ok(await http.get("/v1/booking/masters", headers=_auth(user)))["masters"]
    assert master["id"] not in {m["id"] for m in visible}

    # Not an admin: refused, with the access reason.
    for method, path in [
        ("POST", "/v1/admin/booking/masters"),
        ("GET", "/v1/admin/booking/masters"),
        ("PATCH", f"/v1/admin/booking/masters/{master['id']}?update_mask=active"),
        ("PATCH", "/v1/admin/booking/services/haircut?update_mask=name"),
    ]:
        refused = await http.request(
            method, path, json={} if method != "GET" else None, headers=_auth(user)
        )
        assert refused.status_code == 403, (path, refused.text)
        assert _reason(refused) == "ACCESS_DENIED"

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from server.identity.model import ActingUsers, SessionCache, SessionRecord, User
from server.kernel.principal import Role


def _record(user_id: object = None) -> SessionRecord:
    now = datetime.now(UTC)
    user = User(uuid4() if user_id is None else user_id, 1, "a", "", None, Role.USER, now, None)  # type: ignore[arg-type]
    return SessionRecord(id=uuid4(), user=user, expire_time=now, revoke_time=None)


def test_entries_expire_after_ttl() -> None:
    cache = SessionCache(5)
    record = _record()
    cache.put(b"d1", record, now=100.0)
    assert cache.get(b"d1", now=104.0) is record
    assert cache.session(record.id, now=104.0) is record
    assert cache.get(b"d1", now=105.5) is None
    assert len(cache) == 0


def test_evict_by_session_and_by_user() -> None:
    cache = SessionCache(60)
    a, b = _record(), _record()
    c = _record(a.user.id)
    for digest, record in ((b"a", a), (b"b", b), (b"c", c)):
        cache.put(digest, record, now=0)
    cache.evict_session(b.id)
    assert cache.get(b"b", now=1) is None
    cache.evict_user(a.user.id)
    assert cache.get(b"a", now=1) is None
    assert cache.get(b"c", now=1) is None
    assert len(cache) == 0


def test_bounded_size_and_disabled_cache() -> None:
    cache = SessionCache(60, max_entries=2)
    records = [_record() for _ in range(3)]
    for index, record in enumerate(records):
        cache.put(bytes([index]), record, now=0)
    assert len(cache) == 2
    assert cache.get(bytes([0]), now=0) is None  # the oldest went first
    off = SessionCache(0)
    off.put(b"x", records[0], now=0)
    assert off.get(b"x", now=0) is None


def test_acting_users_expire_and_evict() -> None:
    cache = ActingUsers(5)
    user = _record().user
    cache.put(user, now=0)
    assert cache.get(1, now=4) is user
    assert cache.get(1, now=6) is None
    cache.put(user, now=10)
    cache.evict_user(user.id)
    assert cache.get(1, now=10) is None

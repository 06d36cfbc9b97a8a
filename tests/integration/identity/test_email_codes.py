"""Email one-time codes against the real server: login by email, attempts, expiry, limits."""

from __future__ import annotations

import asyncio
import re
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from switchboard.identity.v1 import identity_pb2 as pb
from switchboard.options.v1 import access_pb2

from tests.conftest import Platform
from tests.integration.identity.outbox import execute, fetch, latest_code, queued
from tests.support.api import Api, error_info, field_violations, status_of
from tests.support.stack import SUPER_ADMIN_TELEGRAM_ID


def new_email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@Example.COM"


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def request_code(api: Api, platform: Platform, email: str) -> str:
    await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email))
    return await latest_code(platform.pg_dsn, platform.secrets.data_key, email)


async def verify(api: Api, email: str, code: str) -> pb.VerifyEmailCodeResponse:
    response: pb.VerifyEmailCodeResponse = await api.auth.VerifyEmailCode(
        pb.VerifyEmailCodeRequest(email=email, code=code)
    )
    return response


async def refused(api: Api, email: str, code: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await verify(api, email, code)
    return caught.value


def retry_after_s(error: grpc.aio.AioRpcError) -> float:
    for detail in status_of(error).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    raise AssertionError("no RetryInfo")


async def test_email_login_creates_the_user_then_logs_in_again(
    api: Api, platform: Platform
) -> None:
    email = new_email("login")
    response = await api.auth.RequestEmailCode(
        pb.RequestEmailCodeRequest(email=email, language="fr")
    )
    assert response.expire_time.seconds > response.next_request_time.seconds - 60
    [mail] = await queued(platform.pg_dsn, platform.secrets.data_key, email=email.lower())
    assert mail.template == "identity.email_code"
    assert mail.channel == "email"
    assert mail.language == "fr"
    assert mail.status == "pending"
    assert mail.params is not None
    assert re.fullmatch(r"[0-9]{6}", mail.params["code"])
    assert mail.params["ttl_minutes"] == "10"
    # Only a keyed digest of the code is stored with the code row.
    [row] = await fetch(
        platform.pg_dsn, "SELECT * FROM identity_email_codes WHERE email = $1", email.lower()
    )
    assert len(row["code_hash"]) == 32
    assert mail.params["code"].encode() not in bytes(row["code_hash"])

    first = await verify(api, email.upper(), mail.params["code"])
    platform.secrets.issued.append(first.session.token)
    assert first.user.email == email.lower()
    assert first.user.language == "fr"
    assert first.user.role == access_pb2.ROLE_USER
    assert not first.user.HasField("telegram_user_id")
    me = await api.auth.GetMe(
        pb.GetMeRequest(), metadata=(("authorization", f"Bearer {first.session.token}"),)
    )
    assert me.user.id == first.user.id

    # The code is single-use.
    again = await refused(api, email, mail.params["code"])
    assert again.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(again).reason == "EMAIL_CODE_NOT_FOUND"

    # A later login by the same address is the same user.
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '2 minutes',"
        " expire_time = expire_time - interval '2 minutes' WHERE email = $1",
        email.lower(),
    )
    code = await request_code(api, platform, email)
    second = await verify(api, email, code)
    platform.secrets.issued.append(second.session.token)
    assert second.user.id == first.user.id
    assert second.session.token != first.session.token
    [user] = await fetch(
        platform.pg_dsn,
        "SELECT email_verify_time FROM identity_users WHERE id = $1",
        uuid.UUID(first.user.id),
    )
    assert user["email_verify_time"] is not None

    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    events = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(action="auth.login", page_size=100), metadata=boss.metadata
    )
    assert any(
        e.target == f"user:{first.user.id}" and e.attributes["method"] == "email"
        for e in events.events
    )


async def test_email_sign_up_without_a_language_chooses_none(api: Api, platform: Platform) -> None:
    email = new_email("nolang")
    await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email))
    [mail] = await queued(platform.pg_dsn, platform.secrets.data_key, email=email.lower())
    assert mail.language == "en"  # the mail itself goes out in the default language
    assert mail.params is not None
    first = await verify(api, email, mail.params["code"])
    platform.secrets.issued.append(first.session.token)
    assert first.user.language == ""  # ... but the user chose nothing
    [row] = await fetch(
        platform.pg_dsn,
        "SELECT language FROM identity_users WHERE id = $1",
        uuid.UUID(first.user.id),
    )
    assert row["language"] is None

    # A later request's language is used for that mail only (it is no choice); once the
    # user has chosen, the choice wins over the request's.
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '2 minutes'"
        " WHERE email = $1",
        email.lower(),
    )
    await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email, language="ru"))
    mails = await queued(platform.pg_dsn, platform.secrets.data_key, email=email.lower())
    assert mails[-1].language == "ru"
    await execute(
        platform.pg_dsn,
        "UPDATE identity_users SET language = 'en' WHERE id = $1",
        uuid.UUID(first.user.id),
    )
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '2 minutes'"
        " WHERE email = $1",
        email.lower(),
    )
    await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email, language="fr"))
    mails = await queued(platform.pg_dsn, platform.secrets.data_key, email=email.lower())
    assert mails[-1].language == "en"
    again = await verify(
        api, email, await latest_code(platform.pg_dsn, platform.secrets.data_key, email)
    )
    platform.secrets.issued.append(again.session.token)
    assert (again.user.id, again.user.language) == (first.user.id, "en")


async def test_five_wrong_codes_lock_the_code(api: Api, platform: Platform) -> None:
    email = new_email("lock")
    code = await request_code(api, platform, email)
    bad = wrong_code(code)
    for left in (4, 3, 2, 1):
        error = await refused(api, email, bad)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(error)
        assert info.reason == "EMAIL_CODE_WRONG"
        assert info.metadata["attempts_left"] == str(left)
        assert ("code", "EMAIL_CODE_WRONG") in field_violations(error)
    fifth = await refused(api, email, bad)
    assert fifth.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(fifth).reason == "EMAIL_CODE_LOCKED"
    # The 6th attempt, with the right code, is refused too: the code is locked.
    sixth = await refused(api, email, code)
    assert sixth.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(sixth).reason == "EMAIL_CODE_LOCKED"

    [row] = await fetch(
        platform.pg_dsn,
        "SELECT attempts, lock_time, consume_time FROM identity_email_codes WHERE email = $1",
        email.lower(),
    )
    assert row["attempts"] == 5
    assert row["lock_time"] is not None
    assert row["consume_time"] is None
    assert not await fetch(
        platform.pg_dsn, "SELECT 1 FROM identity_users WHERE lower(email) = $1", email.lower()
    )
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    events = await api.admin.ListAuditEvents(
        pb.ListAuditEventsRequest(action="auth.email_code_locked", page_size=100),
        metadata=boss.metadata,
    )
    masked = f"email:{email.lower()[0]}***@example.com"
    assert any(e.target == masked for e in events.events)


async def test_concurrent_guesses_never_exceed_the_attempt_limit(
    api: Api, platform: Platform
) -> None:
    email = new_email("race")
    code = await request_code(api, platform, email)
    guesses = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 13)]
    results = await asyncio.gather(
        *(verify(api, email, g) for g in guesses), return_exceptions=True
    )
    reasons = sorted(error_info(r).reason for r in results if isinstance(r, grpc.aio.AioRpcError))
    assert len(reasons) == len(guesses)
    assert reasons.count("EMAIL_CODE_WRONG") == 4
    assert reasons.count("EMAIL_CODE_LOCKED") == 8
    [row] = await fetch(
        platform.pg_dsn, "SELECT attempts FROM identity_email_codes WHERE email = $1", email.lower()
    )
    assert row["attempts"] == 5
    assert error_info(await refused(api, email, code)).reason == "EMAIL_CODE_LOCKED"


async def test_expired_code_is_refused_without_counting(api: Api, platform: Platform) -> None:
    email = new_email("expired")
    code = await request_code(api, platform, email)
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '11 minutes',"
        " expire_time = expire_time - interval '11 minutes' WHERE email = $1",
        email.lower(),
    )
    for presented in (code, wrong_code(code)):
        error = await refused(api, email, presented)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "EMAIL_CODE_EXPIRED"
    [row] = await fetch(
        platform.pg_dsn,
        "SELECT attempts, consume_time FROM identity_email_codes WHERE email = $1",
        email.lower(),
    )
    assert row["attempts"] == 0
    assert row["consume_time"] is None
    # Expired long enough ago, a new code may be asked for and works.
    fresh = await request_code(api, platform, email)
    response = await verify(api, email, fresh)
    platform.secrets.issued.append(response.session.token)
    assert response.user.email == email.lower()


async def test_only_the_newest_code_counts(api: Api, platform: Platform) -> None:
    email = new_email("newest")
    old = await request_code(api, platform, email)
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '61 seconds'"
        " WHERE email = $1",
        email.lower(),
    )
    new = await request_code(api, platform, email)
    if old != new:
        assert error_info(await refused(api, email, old)).reason == "EMAIL_CODE_WRONG"
    response = await verify(api, email, new)
    platform.secrets.issued.append(response.session.token)


async def test_code_requests_are_rate_limited_per_address(api: Api, platform: Platform) -> None:
    email = new_email("limit")
    await request_code(api, platform, email)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email.upper()))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value).reason == "EMAIL_CODE_RATE_LIMITED"
    assert 55 <= retry_after_s(caught.value) <= 60
    # Another address is not affected.
    await request_code(api, platform, new_email("other"))

    # Spaced a minute apart, at most 5 codes an hour.
    for _ in range(4):
        await execute(
            platform.pg_dsn,
            "UPDATE identity_email_codes SET create_time = create_time - interval '61 seconds',"
            " expire_time = expire_time - interval '61 seconds' WHERE email = $1",
            email.lower(),
        )
        await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email))
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '61 seconds',"
        " expire_time = expire_time - interval '61 seconds' WHERE email = $1",
        email.lower(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as capped:
        await api.auth.RequestEmailCode(pb.RequestEmailCodeRequest(email=email))
    assert error_info(capped.value).reason == "EMAIL_CODE_RATE_LIMITED"
    # The oldest of the five leaves the hour window in about 3600 - 5 * 61 seconds.
    assert 3200 <= retry_after_s(capped.value) <= 3300
    mails = await queued(platform.pg_dsn, platform.secrets.data_key, email=email.lower())
    assert len(mails) == 5


@pytest.mark.parametrize(
    ("email", "code", "violation"),
    [
        ("not-an-email", "123456", ("email", "NOT_AN_EMAIL")),
        ("a@example.com", "12345", ("code", "PATTERN_MISMATCH")),
        ("a@example.com", "12345a", ("code", "PATTERN_MISMATCH")),
        ("", "123456", ("email", "REQUIRED")),
    ],
)
async def test_bad_input_is_refused_by_the_contract(
    api: Api, email: str, code: str, violation: tuple[str, str]
) -> None:
    error = await refused(api, email, code)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violation in field_violations(error)


async def test_bad_language_is_refused(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.auth.RequestEmailCode(
            pb.RequestEmailCodeRequest(email=new_email(), language="de")
        )
    assert ("language", "PATTERN_MISMATCH") in field_violations(caught.value)


async def test_unknown_address_has_no_code(api: Api) -> None:
    error = await refused(api, new_email("nobody"), "123456")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "EMAIL_CODE_NOT_FOUND"


async def test_codes_and_addresses_stay_out_of_the_logs(api: Api, platform: Platform) -> None:
    email = new_email("logs")
    code = await request_code(api, platform, email)
    await refused(api, email, wrong_code(code))
    response = await verify(api, email, code)
    platform.secrets.issued.append(response.session.token)
    text = platform.log_path.read_text()
    assert '"msg": "rpc"' in text
    assert not re.search(rf"(?<![0-9]){code}(?![0-9])", text), "the code reached the server log"
    assert email.lower().split("@")[0] not in text.lower(), "the address reached the server log"


async def test_email_login_of_a_deleted_user_is_refused(api: Api, platform: Platform) -> None:
    email = new_email("deleted")
    first = await verify(api, email, await request_code(api, platform, email))
    platform.secrets.issued.append(first.session.token)
    boss = await api.login(SUPER_ADMIN_TELEGRAM_ID)
    await api.admin.DeleteUser(pb.DeleteUserRequest(user_id=first.user.id), metadata=boss.metadata)
    await execute(
        platform.pg_dsn,
        "UPDATE identity_email_codes SET create_time = create_time - interval '2 minutes'"
        " WHERE email = $1",
        email.lower(),
    )
    error = await refused(api, email, await request_code(api, platform, email))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "USER_DELETED"

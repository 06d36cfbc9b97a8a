from __future__ import annotations

import pytest
from switchboard.identity.v1 import identity_pb2 as pb

from server.kernel.errors import InvalidArgument
from server.kernel.validation import validate, violations


def test_valid_request_passes() -> None:
    for request in (
        pb.ListUsersRequest(page_size=10),
        pb.PromoteUserRequest(user_id="8e114717-a57b-4705-bb61-77663cb60426"),
    ):
        assert violations(request) == []
        validate(request)  # returns quietly (None): it raises on any violation
    # The same message with one bad field is refused, so the pass above was not vacuous.
    with pytest.raises(InvalidArgument) as caught:
        validate(pb.PromoteUserRequest(user_id="not-a-uuid"))
    assert [v.field for v in caught.value.violations] == ["user_id"]


def test_violations_are_complete_and_in_field_order() -> None:
    request = pb.LoginWithTelegramWidgetRequest(username="x" * 65, hash="nothex")
    found = [(v.field, v.reason) for v in violations(request)]
    assert found == [
        ("id", "REQUIRED"),
        ("username", "TOO_LONG"),
        ("auth_date", "REQUIRED"),
        ("hash", "PATTERN_MISMATCH"),
    ]
    # Deterministic: the same bad request always gives the same list.
    assert [(v.field, v.reason) for v in violations(request)] == found


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (pb.ListUsersRequest(page_size=201), "page_size", "OUT_OF_RANGE"),
        (pb.ListUsersRequest(page_size=-1), "page_size", "OUT_OF_RANGE"),
        (pb.PromoteUserRequest(user_id="nope"), "user_id", "NOT_A_UUID"),
        (pb.PromoteUserRequest(), "user_id", "REQUIRED"),
        (
            pb.DevLoginRequest(telegram_user_id=-5, display_name="a"),
            "telegram_user_id",
            "OUT_OF_RANGE",
        ),
        (pb.ConfirmTelegramLoginRequest(code="short"), "code", "PATTERN_MISMATCH"),
    ],
)
def test_single_violation(request_: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate(request_)  # type: ignore[arg-type]
    assert [(v.field, v.reason) for v in caught.value.violations] == [(field, reason)]
    assert caught.value.reason == "INVALID_FIELDS"

"""Python client for Switchboard, used by bots, workers, tests and benchmarks.

    from client import Switchboard, error_details

    async with Switchboard.connect("localhost:50051", service_token=token,
                                   act_as_telegram_user_id=42) as sb:
        me = await sb.auth.GetMe(GetMeRequest())

:func:`connect` returns a plain ``grpc.aio.Channel`` (auth metadata, x-request-id, default deadline,
retries of UNAVAILABLE) for any generated stub; :class:`Switchboard` wraps one with typed stubs;
:func:`error_details` reads the google.rpc.Status details of a failed call. The web (TypeScript)
usage example lives in client/web/example.ts.
"""

from client.channel import (
    AUTHORIZATION_HEADER,
    REQUEST_ID_HEADER,
    TELEGRAM_USER_ID_HEADER,
    TELEGRAM_USER_NAME_HEADER,
    RetryPolicy,
    auth_metadata,
    connect,
)
from client.errors import STATUS_DETAILS_KEY, ErrorDetails, FieldViolation, error_details
from client.switchboard import ConnectOptions, Switchboard

__all__ = [
    "AUTHORIZATION_HEADER",
    "REQUEST_ID_HEADER",
    "STATUS_DETAILS_KEY",
    "TELEGRAM_USER_ID_HEADER",
    "TELEGRAM_USER_NAME_HEADER",
    "ConnectOptions",
    "ErrorDetails",
    "FieldViolation",
    "RetryPolicy",
    "Switchboard",
    "auth_metadata",
    "connect",
    "error_details",
]

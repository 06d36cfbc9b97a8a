"""The gRPC-Web frame helpers."""

from __future__ import annotations

import pytest

from gateway import grpcweb


def test_frame_layout() -> None:
    assert grpcweb.encode_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert grpcweb.encode_frame(b"", flag=grpcweb.TRAILER_FLAG) == b"\x80\x00\x00\x00\x00"


def test_parse_messages_and_trailers() -> None:
    body = (
        grpcweb.encode_frame(b"one")
        + grpcweb.encode_frame(b"two")
        + grpcweb.encode_frame(
            b"grpc-status:0\r\ngrpc-message:all%20good\r\n", flag=grpcweb.TRAILER_FLAG
        )
    )

    parsed = grpcweb.parse_response(body)

    assert parsed.messages == [b"one", b"two"]
    assert parsed.status == 0
    assert parsed.message == "all good"


def test_trailers_only_response_uses_headers() -> None:
    parsed = grpcweb.parse_response(
        b"", {"Grpc-Status": "16", "grpc-message": "nope", "content-type": "x"}
    )

    assert parsed.status == 16
    assert parsed.message == "nope"
    assert "content-type" not in parsed.trailers


def test_missing_status() -> None:
    assert grpcweb.parse_response(b"").status == -1


@pytest.mark.parametrize("body", [b"\x00\x00", b"\x00\x00\x00\x00\x05abc"])
def test_truncated_frames_raise(body: bytes) -> None:
    with pytest.raises(ValueError, match="truncated"):
        grpcweb.decode_frames(body)

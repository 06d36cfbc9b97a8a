"""gRPC-Web wire format (binary mode), for tests, probes and scripts without a gRPC-Web library.

A body is a sequence of frames: 1 flag byte (0x00 data, 0x80 trailers), a 4-byte big-endian
length, then the payload. The trailers frame carries `name: value\\r\\n` lines; a call that
fails before any message may instead put grpc-status / grpc-message in the HTTP headers
("trailers-only" response).
"""

from __future__ import annotations

import struct
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "CONTENT_TYPE",
    "TRAILER_FLAG",
    "GrpcWebResponse",
    "decode_frames",
    "encode_frame",
    "encode_request",
    "parse_response",
]

CONTENT_TYPE = "application/grpc-web+proto"
TRAILER_FLAG = 0x80
_HEADER = struct.Struct(">BI")


def encode_frame(payload: bytes, flag: int = 0) -> bytes:
    """One frame: flag byte, 4-byte big-endian length, payload."""
    return _HEADER.pack(flag, len(payload)) + payload


def encode_request(message: bytes) -> bytes:
    """The body of a unary or server-streaming call: one data frame."""
    return encode_frame(message)


def decode_frames(body: bytes) -> list[tuple[int, bytes]]:
    """Splits a body into (flag, payload) frames; raises ValueError when truncated."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _HEADER.size:
            raise ValueError("truncated gRPC-Web frame header")
        flag, length = _HEADER.unpack_from(body, offset)
        offset += _HEADER.size
        if len(body) - offset < length:
            raise ValueError("truncated gRPC-Web frame payload")
        frames.append((flag, body[offset : offset + length]))
        offset += length
    return frames


@dataclass
class GrpcWebResponse:
    """Messages (serialized) and trailers of a gRPC-Web response."""

    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """The gRPC status code (0 OK); -1 when the response had none."""
        return int(self.trailers.get("grpc-status", "-1"))

    @property
    def message(self) -> str:
        """grpc-message, percent-decoded."""
        return urllib.parse.unquote(self.trailers.get("grpc-message", ""))


def parse_response(body: bytes, headers: Mapping[str, str] | None = None) -> GrpcWebResponse:
    """Parses a gRPC-Web body; grpc-* HTTP headers count as trailers (trailers-only replies)."""
    response = GrpcWebResponse()
    for name, value in _items(headers or {}):
        if name.lower().startswith("grpc-"):
            response.trailers[name.lower()] = value
    for flag, payload in decode_frames(body):
        if flag & TRAILER_FLAG:
            for line in payload.decode("utf-8", errors="replace").split("\r\n"):
                name, sep, value = line.partition(":")
                if sep:
                    response.trailers[name.strip().lower()] = value.strip()
        else:
            response.messages.append(payload)
    return response


def _items(headers: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    return headers.items()

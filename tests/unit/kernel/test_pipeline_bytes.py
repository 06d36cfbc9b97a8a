from __future__ import annotations

from google.protobuf import wrappers_pb2

from server.kernel.pipeline import bytes_passthrough


def test_streamed_bytes_are_written_as_they_are_and_messages_serialized() -> None:
    serialize = bytes_passthrough(wrappers_pb2.StringValue.SerializeToString)
    assert serialize is not None
    message = wrappers_pb2.StringValue(value="hi")
    assert serialize(message) == message.SerializeToString()
    encoded = message.SerializeToString()
    assert serialize(encoded) is encoded
    assert bytes_passthrough(None) is None  # grpc passes messages through unserialized then

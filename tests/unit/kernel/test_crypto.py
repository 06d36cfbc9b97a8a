from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from server.kernel.crypto import DataKeyError, SecretBox, decode_key, generate_key


def test_sealed_value_opens_only_for_its_purpose() -> None:
    box = SecretBox.from_text(generate_key())
    sealed = box.seal(b"123456", b"outbox:params")
    assert b"123456" not in sealed
    assert box.open(sealed, b"outbox:params") == b"123456"
    with pytest.raises(InvalidTag):
        box.open(sealed, b"other:column")


def test_each_seal_uses_a_fresh_nonce() -> None:
    box = SecretBox.from_text(generate_key())
    assert box.seal(b"x", b"p") != box.seal(b"x", b"p")


def test_tampering_and_another_key_are_refused() -> None:
    box = SecretBox.from_text(generate_key())
    sealed = bytearray(box.seal(b"secret", b"p"))
    sealed[-1] ^= 1
    with pytest.raises(InvalidTag):
        box.open(bytes(sealed), b"p")
    with pytest.raises(InvalidTag):
        SecretBox.from_text(generate_key()).open(box.seal(b"secret", b"p"), b"p")


@pytest.mark.parametrize("value", ["", "not base64 !!", "QUJD"])
def test_a_bad_key_is_refused_with_the_variable_name(value: str) -> None:
    with pytest.raises(DataKeyError, match="SWITCHBOARD_DATA_KEY"):
        decode_key(value)

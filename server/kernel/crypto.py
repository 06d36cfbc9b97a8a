"""Encryption of secrets stored in PostgreSQL (rule 7: stored secrets are encrypted).

One AES-256-GCM key from the environment (``SWITCHBOARD_DATA_KEY``, 32 bytes, urlsafe base64).
Each value gets a fresh 96-bit nonce; the associated data binds a ciphertext to what it is
for (for example ``b"outbox:params"``), so a value copied to another column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"


class DataKeyError(ValueError):
    """The configured data key is not 32 bytes of urlsafe base64."""


def generate_key() -> str:
    """A new key in the form ``SWITCHBOARD_DATA_KEY`` expects."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def decode_key(value: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(value.strip().encode() + b"==")
    except (binascii.Error, ValueError):
        raise DataKeyError("SWITCHBOARD_DATA_KEY is not urlsafe base64") from None
    if len(key) != KEY_BYTES:
        raise DataKeyError(f"SWITCHBOARD_DATA_KEY must decode to {KEY_BYTES} bytes")
    return key


class SecretBox:
    """Seals and opens small secrets; the stored form is ``version || nonce || ciphertext``."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise DataKeyError(f"data key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_text(cls, value: str) -> SecretBox:
        return cls(decode_key(value))

    def seal(self, plaintext: bytes, purpose: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose)

    def open(self, sealed: bytes, purpose: bytes) -> bytes:
        """Raises ``cryptography.exceptions.InvalidTag`` when tampered or for another purpose."""
        if sealed[:1] != VERSION:
            raise ValueError("unknown sealed-value version")
        nonce = sealed[1 : 1 + NONCE_BYTES]
        return self._aead.decrypt(nonce, sealed[1 + NONCE_BYTES :], purpose)

"""Sealing secret artifacts (private keys) before they reach a row: AES-256-GCM with a key from settings.

A sealed blob is `MAGIC | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag`. The key id is the start of
the SHA-256 of the key: it lets a wrong key be told apart from a damaged blob without revealing anything about
the key. The associated data binds a blob to its row's context (renewal, FMC, device, path), so a sealed key
copied onto another row does not open there.

Pure: bytes and strings in, bytes out; no settings, no database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from pipeline.errors import ConfigError

KEY_VARIABLE = "SFTRENEW_ARTIFACT_KEY"
MAGIC = b"SFA1"
_KEY_BYTES = 32
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_HEADER = len(MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
MAKE_KEY_HINT = (
    f"make one with `python -c 'from pipeline.store import new_artifact_key; print(new_artifact_key())'`, "
    f"keep it with the other secrets and set {KEY_VARIABLE} for every worker and the CLI"
)


def new_artifact_key() -> str:
    """A fresh 256-bit artifact key, URL-safe base64 (the form `SFTRENEW_ARTIFACT_KEY` takes)."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def artifact_key(value: SecretStr | str | None) -> bytes:
    """The raw key from its configured form; a missing or malformed key is a ConfigError that says how to
    make one (and never repeats the value)."""
    if value is None:
        raise ConfigError(
            f"secret artifacts cannot be stored or read: {KEY_VARIABLE} is not set; {MAKE_KEY_HINT}"
        )
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != _KEY_BYTES:
        raise ConfigError(
            f"{KEY_VARIABLE} is not a usable key (it must be {_KEY_BYTES} bytes in URL-safe base64); "
            f"{MAKE_KEY_HINT}"
        )
    return raw


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID_BYTES]


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt and authenticate `plaintext`, bound to `context` (which must be given again to open it)."""
    nonce = os.urandom(_NONCE_BYTES)
    return MAGIC + key_id(key) + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def unseal(key: bytes, blob: bytes, context: bytes, *, what: str) -> bytes:
    """The plaintext of a sealed blob. A blob sealed with another key, or damaged, or moved to another row,
    is a ConfigError naming `what` (never the content)."""
    if len(blob) < _HEADER or not blob.startswith(MAGIC):
        raise ConfigError(f"{what} is not a sealed artifact (damaged or written by something else)")
    stored_id = blob[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES]
    if stored_id != key_id(key):
        raise ConfigError(
            f"{what} was sealed with a different {KEY_VARIABLE} (key id {stored_id.hex()}, the configured "
            f"key has id {key_id(key).hex()}); set the key it was stored with"
        )
    nonce = blob[len(MAGIC) + _KEY_ID_BYTES : _HEADER]
    try:
        return AESGCM(key).decrypt(nonce, blob[_HEADER:], context)
    except InvalidTag:
        raise ConfigError(
            f"{what} does not open with the configured {KEY_VARIABLE}: the stored data is damaged or "
            "was copied from another record"
        ) from None

"""Sealing secret artifacts: round trip, and every way a blob can fail to open says so without showing it."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.store.crypto import KEY_VARIABLE, MAGIC, artifact_key, new_artifact_key, seal, unseal

CONTEXT = b"renewal-1\0fmc-a\0ftd-1\0peer_material\0/var/sf/peers/u1/sftunnel-key.pem"


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    """A real private key, made here (never pasted into source)."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_new_keys_are_32_random_bytes_in_urlsafe_base64() -> None:
    first, second = new_artifact_key(), new_artifact_key()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    assert artifact_key(first) == base64.urlsafe_b64decode(first)
    assert artifact_key(SecretStr(first)) == artifact_key(first)


def test_a_key_from_the_environment_is_usable_and_hidden_in_settings() -> None:
    key = new_artifact_key()
    settings = load_settings({KEY_VARIABLE: key, "SFTRENEW_DATABASE_URL": "sqlite:///x.db"})
    assert settings.database_url.get_secret_value() == "sqlite:///x.db"
    assert artifact_key(settings.artifact_key) == base64.urlsafe_b64decode(key)
    assert key not in repr(settings)


def test_no_key_is_a_config_error_that_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError, match=KEY_VARIABLE) as caught:
        artifact_key(None)
    assert "new_artifact_key" in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"short").decode(),
        base64.b64encode(b"x" * 33).decode(),
    ],
)
def test_a_malformed_key_is_refused_without_repeating_it(bad: str) -> None:
    with pytest.raises(ConfigError, match=KEY_VARIABLE) as caught:
        artifact_key(SecretStr(bad))
    if bad:
        assert bad not in str(caught.value)


def test_sealed_data_round_trips_and_hides_the_key(key_pem: bytes) -> None:
    key = artifact_key(new_artifact_key())
    blob = seal(key, key_pem, CONTEXT)
    assert blob.startswith(MAGIC)
    assert b"PRIVATE KEY" not in blob
    assert key_pem.splitlines()[1] not in blob
    assert unseal(key, blob, CONTEXT, what="artifact 1") == key_pem


def test_sealing_twice_gives_different_blobs(key_pem: bytes) -> None:
    key = artifact_key(new_artifact_key())
    assert seal(key, key_pem, CONTEXT) != seal(key, key_pem, CONTEXT)


def test_a_wrong_key_is_named_as_such_and_shows_nothing(key_pem: bytes) -> None:
    right, wrong = artifact_key(new_artifact_key()), artifact_key(new_artifact_key())
    blob = seal(right, key_pem, CONTEXT)
    with pytest.raises(ConfigError, match="different SFTRENEW_ARTIFACT_KEY") as caught:
        unseal(wrong, blob, CONTEXT, what="artifact 7")
    message = str(caught.value)
    assert "artifact 7" in message
    assert "PRIVATE KEY" not in message
    assert base64.urlsafe_b64encode(right).decode() not in message
    assert base64.urlsafe_b64encode(wrong).decode() not in message


def test_a_blob_moved_to_another_row_does_not_open(key_pem: bytes) -> None:
    key = artifact_key(new_artifact_key())
    blob = seal(key, key_pem, CONTEXT)
    with pytest.raises(ConfigError, match="copied from another record"):
        unseal(key, blob, CONTEXT.replace(b"ftd-1", b"ftd-2"), what="artifact 2")


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign"])
def test_a_damaged_blob_is_refused(key_pem: bytes, damage: str) -> None:
    key = artifact_key(new_artifact_key())
    blob = bytearray(seal(key, key_pem, CONTEXT))
    if damage == "flip":
        blob[-1] ^= 0x01
    elif damage == "truncate":
        del blob[10:]
    else:
        blob[:4] = b"XXXX"
    with pytest.raises(ConfigError, match="artifact 3"):
        unseal(key, bytes(blob), CONTEXT, what="artifact 3")

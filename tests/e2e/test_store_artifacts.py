"""Artifacts on real databases (a fresh SQLite file and a fresh PostgreSQL database per test, on both):
secrets sealed at rest and bound to their row, everything else kept as it is.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlmodel import Session

from pipeline import store
from pipeline.errors import ConfigError
from tests.e2e.conftest import T0, new_renewal

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---------------------------------------------------------------- artifacts


def _raw_data(engine: Engine, artifact_id: int | None) -> bytes:
    """The column as the database holds it, read with plain SQL (no model, no decryption)."""
    with engine.connect() as connection:
        value = connection.execute(
            text("SELECT data FROM artifact WHERE id = :id"), {"id": artifact_id}
        ).one()[0]
    assert isinstance(value, bytes | memoryview)
    return bytes(value)


def _keep(
    session: Session, rid: str, *, path: str, data: bytes, secret: bool, key: SecretStr | None
) -> store.Artifact:
    return store.add_artifact(
        session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", kind="peer_material", path=path,
        data=data, secret=secret, key=key, now=T0,
    )  # fmt: skip


def test_secret_artifacts_are_sealed_at_rest(engine: Engine, key: SecretStr, key_pem: bytes) -> None:
    path = "/var/sf/peers/u1/certs_pushed/sftunnel-key.pem"
    with Session(engine) as session:
        rid = new_renewal(session).id
        kept = _keep(session, rid, path=path, data=key_pem, secret=True, key=key)
        assert _keep(session, rid, path=path, data=key_pem, secret=True, key=key).id == kept.id  # redone
    raw = _raw_data(engine, kept.id)
    assert b"PRIVATE KEY" not in raw
    assert key_pem.splitlines()[1] not in raw
    with Session(engine) as session:
        (stored,) = store.artifacts_of(session=session, renewal_id=rid, device="ftd-1")
        assert store.artifact_data(stored, key=key) == key_pem
        with pytest.raises(ConfigError, match="different SFTRENEW_ARTIFACT_KEY") as caught:
            store.artifact_data(stored, key=SecretStr(store.new_artifact_key()))
        assert "PRIVATE KEY" not in str(caught.value)
        with pytest.raises(ConfigError, match="SFTRENEW_ARTIFACT_KEY is not set"):
            store.artifact_data(stored, key=None)


def test_a_secret_without_a_key_is_not_stored(engine: Engine, key_pem: bytes) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        with pytest.raises(ConfigError, match="SFTRENEW_ARTIFACT_KEY") as caught:
            _keep(session, rid, path="/etc/sf/keys/sftunnel-key.pem", data=key_pem, secret=True, key=None)
        assert "new_artifact_key" in str(caught.value)
        with pytest.raises(ValueError, match="secret=True"):  # a key offered as plain
            _keep(session, rid, path="/tmp/whatever.pem", data=key_pem, secret=False, key=None)
        assert store.artifacts_of(session=session, renewal_id=rid) == []


def test_plain_artifacts_are_stored_as_they_are(engine: Engine, key: SecretStr) -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    with Session(engine) as session:
        rid = new_renewal(session).id
        kept = _keep(session, rid, path="/var/sf/peers/u1/cacert.pem", data=cert, secret=False, key=key)
        assert store.artifact_data(kept, key=None) == cert
    assert _raw_data(engine, kept.id) == cert


def test_a_sealed_blob_copied_to_another_row_does_not_open(
    engine: Engine, key: SecretStr, key_pem: bytes
) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        one, two = (
            _keep(
                session,
                rid,
                path=f"/var/sf/peers/{uuid}/sftunnel-key.pem",
                data=key_pem,
                secret=True,
                key=key,
            )
            for uuid in ("u1", "u2")
        )
        session.connection().execute(
            text("UPDATE artifact SET data = :d WHERE id = :id"), {"d": one.data, "id": two.id}
        )
        session.commit()
        session.refresh(two)
        with pytest.raises(ConfigError, match="copied from another record"):
            store.artifact_data(two, key=key)

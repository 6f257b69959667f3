"""The lab's key pool and certificates, checked with cryptography and with the real openssl command line."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]  # it ships no type hints
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sftlab.fleet import pki
from sftlab.fleet.keys import KeyPool, default_cache_dir, key_file_name

FMC_UUID = "cdb123c8-4347-11ef-aca1-f3aa241412a1"
FTD_UUID = "c8d5d5c6-87c9-11ef-a993-b9831565bc4e"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def tmp_key_pool(tmp_path_factory: pytest.TempPathFactory) -> KeyPool:
    return KeyPool(tmp_path_factory.mktemp("pki-keys"))


@pytest.fixture
def keys(tmp_key_pool: KeyPool) -> Iterator[rsa.RSAPrivateKey]:
    return iter(tmp_key_pool.take(3))


def _issue(
    keys: Iterator[rsa.RSAPrivateKey], *, ca_not_before: datetime, cert_not_before: datetime
) -> tuple[x509.Certificate, rsa.RSAPrivateKey, x509.Certificate, rsa.RSAPrivateKey]:
    ca_key, key = next(keys), next(keys)
    ca = pki.make_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=ca_not_before)
    cert = pki.make_sftunnel_cert(
        ca_cert=ca, ca_key=ca_key, key=key, owner_uuid=FTD_UUID, serial=7, not_before_utc=cert_not_before
    )
    return ca, ca_key, cert, key


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_ca_has_the_internal_ca_subject_extensions_and_lifetime(keys: Iterator[rsa.RSAPrivateKey]) -> None:
    ca_key = next(keys)
    ca = pki.make_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=NOW - timedelta(days=10))

    assert ca.version is x509.Version.v3
    assert ca.serial_number == 1
    assert ca.subject == ca.issuer
    assert [(a.oid, a.value) for a in ca.subject] == [
        (NameOID.TITLE, "InternalCA"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Intrusion Management System"),
        (NameOID.COMMON_NAME, FMC_UUID),
        (NameOID.ORGANIZATION_NAME, "Cisco Systems, Inc"),
    ]
    assert b"\x0c\x12Cisco Systems, Inc" in ca.subject.public_bytes()  # tag 0x0c: UTF8String
    assert ca.not_valid_before_utc == NOW - timedelta(days=10)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature
    ca.verify_directly_issued_by(ca)
    assert pki.oneline_dn(ca.subject) == (
        f"/title=InternalCA/OU=Intrusion Management System/CN={FMC_UUID}/O=Cisco Systems, Inc"
    )


def test_sftunnel_cert_has_its_subject_extensions_and_a_lifetime_not_clamped_to_the_ca(
    keys: Iterator[rsa.RSAPrivateKey],
) -> None:
    ca, _, cert, _ = _issue(keys, ca_not_before=NOW - timedelta(days=3000), cert_not_before=NOW)

    assert cert.version is x509.Version.v3
    assert cert.serial_number == 7
    assert cert.issuer == ca.subject
    assert [(a.oid, a.value) for a in cert.subject] == [
        (NameOID.COMMON_NAME, "localhost"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Intrusion Management System"),
        (NameOID.ORGANIZATION_NAME, "Cisco Systems, Inc"),
        (NameOID.TITLE, FTD_UUID),
        (NameOID.GENERATION_QUALIFIER, "sftunnel"),
    ]
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert cert.not_valid_after_utc > ca.not_valid_after_utc
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment
    assert not usage.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    cert.verify_directly_issued_by(ca)


def test_openssl_verify_accepts_a_device_cert(keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path) -> None:
    ca, _, cert, _ = _issue(keys, ca_not_before=NOW - timedelta(days=100), cert_not_before=NOW)
    ca_file = _write(tmp_path / "ca.pem", pki.cert_pem(ca))
    cert_file = _write(tmp_path / "cert.pem", pki.cert_pem(cert))

    result = _openssl("verify", "-CAfile", ca_file, cert_file)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{cert_file}: OK"


def test_openssl_verify_fails_with_an_expired_ca(keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path) -> None:
    ca, _, cert, _ = _issue(
        keys, ca_not_before=NOW - timedelta(days=3680), cert_not_before=NOW - timedelta(days=1)
    )
    ca_file = _write(tmp_path / "ca.pem", pki.cert_pem(ca))
    cert_file = _write(tmp_path / "cert.pem", pki.cert_pem(cert))

    result = _openssl("verify", "-CAfile", ca_file, cert_file)

    assert result.returncode != 0
    assert "certificate has expired" in result.stdout + result.stderr


def test_key_matches_cert_and_is_written_as_pkcs1(keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path) -> None:
    _, _, cert, key = _issue(keys, ca_not_before=NOW, cert_not_before=NOW)
    key_bytes = pki.key_pem(key)
    key_file = _write(tmp_path / "key.pem", key_bytes)
    cert_file = _write(tmp_path / "cert.pem", pki.cert_pem(cert))

    assert key_bytes.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert cert.public_key() == key.public_key()
    cert_modulus = _openssl("x509", "-noout", "-modulus", "-in", cert_file).stdout
    key_modulus = _openssl("rsa", "-noout", "-modulus", "-in", key_file).stdout
    assert cert_modulus.startswith("Modulus=")
    assert cert_modulus == key_modulus
    assert _openssl("rsa", "-check", "-noout", "-in", key_file).returncode == 0


def test_oneline_dn_is_what_openssl_prints(keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path) -> None:
    ca, _, cert, _ = _issue(keys, ca_not_before=NOW, cert_not_before=NOW)
    for item in (ca, cert):
        path = _write(tmp_path / "c.pem", pki.cert_pem(item))
        printed = _openssl("x509", "-noout", "-subject", "-nameopt", "compat", "-in", path).stdout
        assert printed.strip() == f"subject={pki.oneline_dn(item.subject)}"


def test_a_foreign_ca_key_or_a_naive_time_is_refused(keys: Iterator[rsa.RSAPrivateKey]) -> None:
    ca_key, other = next(keys), next(keys)
    ca = pki.make_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=NOW)

    with pytest.raises(ValueError, match="does not match the CA certificate"):
        pki.make_sftunnel_cert(
            ca_cert=ca, ca_key=other, key=other, owner_uuid=FTD_UUID, serial=2, not_before_utc=NOW
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.make_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=NOW.replace(tzinfo=None))


def test_ca_database_is_read_by_openssl_ca_and_crl_verifies(
    keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    ca_key, key = next(keys), next(keys)
    ca = pki.make_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=NOW)
    issued = [
        pki.make_sftunnel_cert(
            ca_cert=ca, ca_key=ca_key, key=key, owner_uuid=f"peer-{n}", serial=n, not_before_utc=NOW
        )
        for n in (2, 3, 255, 256)
    ]
    index_txt, serial = pki.ca_database(list(reversed(issued)))
    _write(tmp_path / "index.txt", index_txt)
    _write(tmp_path / "serial", serial)
    database = f"dir = {tmp_path}\ndatabase = $dir/index.txt\nserial = $dir/serial\n"
    config = _write(tmp_path / "ca.cnf", f"[ca]\ndefault_ca = db\n[db]\n{database}".encode())

    assert serial == b"0101\n"
    assert [line.split("\t")[3] for line in index_txt.decode().splitlines()] == ["02", "03", "FF", "0100"]
    assert "0100=Valid (V)" in _openssl("ca", "-config", config, "-status", "0100").stderr
    assert _openssl("ca", "-config", config, "-status", "04").returncode != 0
    crl = pki.make_empty_crl(ca_cert=ca, ca_key=ca_key, last_update_utc=NOW)
    crl_file = _write(tmp_path / "crl.pem", pki.crl_pem(crl))
    ca_file = _write(tmp_path / "ca.pem", pki.cert_pem(ca))
    assert "verify OK" in _openssl("crl", "-in", crl_file, "-CAfile", ca_file, "-noout").stderr


# ---------------------------------------------------------------- the v1 CA (`ca_format: v1`)


def _openssl_v1_ca(key: rsa.RSAPrivateKey, tmp_path: Path) -> bytes:
    """The CA `openssl x509 -req -signkey -set_serial 0` makes from `key` and the InternalCA subject."""
    key_file = _write(tmp_path / "openssl-ca.key", pki.key_pem(key))
    subject = pki.oneline_dn(pki.ca_name(FMC_UUID))
    csr, cert = tmp_path / "openssl-ca.csr", tmp_path / "openssl-ca.pem"
    for args in (
        ("req", "-new", "-key", key_file, "-subj", subject, "-out", csr),
        ("x509", "-req", "-in", csr, "-signkey", key_file, "-set_serial", "0", "-days", "3650", "-out", cert),
    ):
        assert _openssl(*args).returncode == 0
    return cert.read_bytes()


def _tbs_without_validity(pem: bytes) -> bytes:
    """The TBSCertificate's content octets with the validity cut out: every other byte must agree."""
    tbs = asn1_x509.Certificate.load(ssl.PEM_cert_to_DER_cert(pem.decode()))["tbs_certificate"]
    content: bytes = tbs.contents
    return content.replace(tbs["validity"].dump(), b"")


@pytest.mark.filterwarnings("error")
def test_v1_ca_is_what_openssl_x509_req_set_serial_0_makes(
    keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    key = next(keys)
    ca = pki.make_v1_ca(key, fmc_uuid=FMC_UUID, not_before_utc=NOW - timedelta(days=10))
    path = _write(tmp_path / "ca.pem", ca.pem)
    text = _openssl("x509", "-noout", "-text", "-in", path).stdout

    assert "Version: 1 (0x0)" in text
    assert "Serial Number: 0 (0x0)" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert "X509v3" not in text
    # Byte for byte what the openssl CLI makes from the same key and subject, the dates aside.
    assert _tbs_without_validity(ca.pem) == _tbs_without_validity(_openssl_v1_ca(key, tmp_path))
    assert _openssl("verify", "-CAfile", path, path).returncode == 0
    subject = _openssl("x509", "-noout", "-subject", "-nameopt", "compat", "-in", path).stdout.strip()
    assert subject == f"subject={pki.oneline_dn(pki.ca_name(FMC_UUID))}"
    assert ca.subject == pki.ca_name(FMC_UUID)
    assert (ca.ca_format, ca.not_valid_before_utc) == ("v1", NOW - timedelta(days=10))
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)
    assert pki.read_ca_file(ca.pem) == pki.CaFileFacts("v1", ca.not_valid_before_utc, ca.not_valid_after_utc)
    assert ca.public_key().public_numbers() == key.public_key().public_numbers()


@pytest.mark.filterwarnings("error")
def test_v1_ca_issues_certificates_and_a_crl_openssl_accepts(
    keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    ca_key, key, other = next(keys), next(keys), next(keys)
    ca = pki.make_internal_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=NOW, ca_format="v1")
    cert = pki.make_sftunnel_cert(
        ca_cert=ca, ca_key=ca_key, key=key, owner_uuid=FTD_UUID, serial=2, not_before_utc=NOW
    )
    ca_file = _write(tmp_path / "ca.pem", ca.pem)
    cert_file = _write(tmp_path / "cert.pem", pki.cert_pem(cert))
    crl = pki.make_empty_crl(ca_cert=ca, ca_key=ca_key, last_update_utc=NOW)
    crl_file = _write(tmp_path / "crl.pem", pki.crl_pem(crl))

    assert cert.issuer == ca.subject
    result = _openssl("verify", "-CAfile", ca_file, "-CRLfile", crl_file, "-crl_check", cert_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify OK" in _openssl("crl", "-in", crl_file, "-CAfile", ca_file, "-noout").stderr
    with pytest.raises(ValueError, match="does not match the CA certificate"):
        pki.make_sftunnel_cert(
            ca_cert=ca, ca_key=other, key=key, owner_uuid=FTD_UUID, serial=3, not_before_utc=NOW
        )


def test_v3_internal_ca_is_make_ca(keys: Iterator[rsa.RSAPrivateKey]) -> None:
    ca = pki.make_internal_ca(next(keys), fmc_uuid=FMC_UUID, not_before_utc=NOW)
    cert = x509.load_pem_x509_certificate(ca.pem)

    assert (cert.version, cert.serial_number, ca.ca_format) == (x509.Version.v3, 1, "v3")
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (ca.subject, ca.not_valid_before_utc) == (cert.subject, cert.not_valid_before_utc)
    assert pki.read_ca_file(ca.pem).ca_format == "v3"
    with pytest.raises(ValueError, match="expected one PEM CA certificate"):
        pki.read_ca_file(b"not a certificate")


def _tls_context(side: ssl._SSLMethod, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """sftunnel's mutual TLS as lab.tunnel_tls sets it up: TLS 1.2, one cipher, a certificate each way."""
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES256-GCM-SHA384")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    return ctx


@pytest.mark.filterwarnings("error")
def test_openssl_accepts_the_v1_ca_as_a_trust_anchor_in_a_mutual_tls_handshake(
    keys: Iterator[rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    ca_key, fmc_key, ftd_key = next(keys), next(keys), next(keys)
    ca = pki.make_v1_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=NOW - timedelta(days=1))
    files = {"ca": _write(tmp_path / "ca.pem", ca.pem)}
    for name, key, serial in (("fmc", fmc_key, 2), ("ftd", ftd_key, 3)):
        cert = pki.make_sftunnel_cert(
            ca_cert=ca, ca_key=ca_key, key=key, owner_uuid=f"{name}-uuid", serial=serial, not_before_utc=NOW
        )
        files[name] = _write(tmp_path / f"{name}.pem", pki.cert_pem(cert))
        files[f"{name}.key"] = _write(tmp_path / f"{name}.key", pki.key_pem(key))
    server_ctx = _tls_context(ssl.PROTOCOL_TLS_SERVER, files["ca"], files["fmc"], files["fmc.key"])
    client_ctx = _tls_context(ssl.PROTOCOL_TLS_CLIENT, files["ca"], files["ftd"], files["ftd.key"])
    server_end, client_end = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(server_end, server_side=True) as tls:
            seen["client"] = tls.getpeercert()
            tls.sendall(b"ok")

    server = threading.Thread(target=serve)
    server.start()
    try:
        with client_ctx.wrap_socket(client_end) as tls:
            seen["server"] = tls.getpeercert()
            assert tls.recv(2) == b"ok"
    finally:
        server.join(timeout=30)

    assert seen["server"] and seen["client"]  # each end verified the other against the v1 CA


def test_pool_hands_out_each_key_once_and_reuses_its_cache(tmp_path: Path) -> None:
    first = KeyPool(tmp_path, workers=2)
    batch = first.take(4) + first.take(1)
    again = KeyPool(tmp_path).take(5)

    numbers = [k.private_numbers().d for k in batch]
    assert len(set(numbers)) == 5
    assert [k.private_numbers().d for k in again] == numbers
    assert all(k.key_size == 2048 for k in batch)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [key_file_name(i) for i in range(5)]
    assert (tmp_path / names[0]).read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")


def test_pool_replaces_a_damaged_cache_file_and_ensure_prefills(tmp_path: Path) -> None:
    KeyPool(tmp_path).ensure(3)
    (tmp_path / key_file_name(1)).write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\ncut short")

    keys = KeyPool(tmp_path).take(3)

    assert len({k.private_numbers().d for k in keys}) == 3
    reloaded = KeyPool(tmp_path).take(3)
    assert reloaded[1].private_numbers().d == keys[1].private_numbers().d
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pool_without_cache_generates_distinct_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pool = KeyPool(None, workers=1)
    pool.ensure(2)

    keys = pool.take(3)

    assert len({k.private_numbers().d for k in keys}) == 3
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="negative"):
        pool.take(-1)


def test_default_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTLAB_KEY_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SFTLAB_KEY_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "sftrenew" / "lab-keys"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sftrenew" / "lab-keys"

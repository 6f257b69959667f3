"""The lab's certificates: an FMC InternalCA and the sftunnel certificates it issues (device-facts 6, 12).

The lab default is an X.509 v3 CA (serial 1, basicConstraints CA:TRUE), because cryptography's builder only
makes v3 certificates with a positive serial and OpenSSL refuses a v3 CA without CA:TRUE. Real FMCs probably
hold a v1 CA with serial 0; the core's unit tests cover that shape with vectors made by the openssl CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
ORGANIZATION = "Cisco Systems, Inc"
ORG_UNIT = "Intrusion Management System"

# OpenSSL's short names, as X509_NAME_oneline prints them in the device logs.
_SHORT_NAMES: dict[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.TITLE: "title",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
}


def ca_name(fmc_uuid: str) -> x509.Name:
    """The InternalCA's subject (and issuer), in the RDN order of the CA regenerated in device-facts 6.1."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.TITLE, "InternalCA"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ORG_UNIT),
            x509.NameAttribute(NameOID.COMMON_NAME, fmc_uuid),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def sftunnel_name(owner_uuid: str) -> x509.Name:
    """An sftunnel certificate's subject; `title` carries the UUID of the device that presents it."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ORG_UNIT),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.TITLE, owner_uuid),
            x509.NameAttribute(NameOID.GENERATION_QUALIFIER, "sftunnel"),
        ]
    )


def make_ca(
    key: rsa.RSAPrivateKey, *, fmc_uuid: str, not_before_utc: datetime, days: int = CA_DAYS
) -> x509.Certificate:
    """A self-signed InternalCA valid `days` days from `not_before_utc` (a past start ages or expires it)."""
    _require_aware(not_before_utc)
    name = ca_name(fmc_uuid)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before_utc)
        .not_valid_after(not_before_utc + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def make_sftunnel_cert(
    *,
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    key: rsa.RSAPrivateKey,
    owner_uuid: str,
    serial: int,
    not_before_utc: datetime,
    days: int = CA_DAYS,
) -> x509.Certificate:
    """An sftunnel certificate for `owner_uuid`, issued by `ca_cert`.

    The lifetime is not clamped to the CA's: real FMCs issue 3650-day certificates whatever the CA has left.
    Raises ValueError when `ca_key` is not the key of `ca_cert` (the result would never verify).
    """
    _require_aware(not_before_utc)
    if ca_key.public_key().public_numbers() != _rsa_public(ca_cert).public_numbers():
        raise ValueError(f"the CA key does not match the CA certificate {oneline_dn(ca_cert.subject)}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(sftunnel_name(owner_uuid))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before_utc)
        .not_valid_after(not_before_utc + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def make_empty_crl(
    *, ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, last_update_utc: datetime, days: int = 30
) -> x509.CertificateRevocationList:
    """The CA's CRL with nothing revoked: sftunnel.conf names one (`proxy_crl`), so the lab writes one."""
    _require_aware(last_update_utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(last_update_utc)
        .next_update(last_update_utc + timedelta(days=days))
    )
    return builder.sign(ca_key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#1 (`BEGIN RSA PRIVATE KEY`), unencrypted: the lab default for the key files on the device."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def oneline_dn(name: x509.Name) -> str:
    """The DN as OpenSSL's oneline form prints it in device logs: `/title=InternalCA/OU=.../CN=.../O=...`."""
    return "".join(f"/{_SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)}={attr.value!s}" for attr in name)


def ca_database(issued: Sequence[x509.Certificate]) -> tuple[bytes, bytes]:
    """`index.txt` and `serial` of an `openssl ca` database that issued `issued` (all still valid).

    index.txt has one tab-separated line per certificate, in serial order: `V`, expiry, an empty
    revocation date, the serial in even-length upper-case hex, `unknown`, the subject in oneline form.
    `serial` holds the next serial to issue.
    """
    ordered = sorted(issued, key=lambda cert: cert.serial_number)
    lines = [
        f"V\t{_asn1_time(cert.not_valid_after_utc)}\t\t{_hex_serial(cert.serial_number)}\tunknown\t"
        f"{oneline_dn(cert.subject)}\n"
        for cert in ordered
    ]
    next_serial = ordered[-1].serial_number + 1 if ordered else 1
    return "".join(lines).encode("utf-8"), f"{_hex_serial(next_serial)}\n".encode("ascii")


def _hex_serial(serial: int) -> str:
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def _asn1_time(moment_utc: datetime) -> str:
    """As OpenSSL prints it in index.txt: UTCTime before 2050, GeneralizedTime from then on."""
    if moment_utc.year < 2050:
        return moment_utc.strftime("%y%m%d%H%M%SZ")
    return moment_utc.strftime("%Y%m%d%H%M%SZ")


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _rsa_public(cert: x509.Certificate) -> rsa.RSAPublicKey:
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise TypeError(f"the lab CA must hold an RSA key, not {type(public).__name__}")
    return public


def _require_aware(moment_utc: datetime) -> None:
    if moment_utc.tzinfo is None or moment_utc.utcoffset() is None:
        raise ValueError("certificate times must be timezone-aware (UTC)")

"""The lab's certificates: an FMC InternalCA and the sftunnel certificates it issues (device-facts 6, 12).

The lab default is an X.509 v3 CA (serial 1, basicConstraints CA:TRUE), because OpenSSL refuses a v3 CA
without CA:TRUE. Real FMCs probably hold a v1 CA with serial 0 and no extensions, as
`openssl x509 -req -set_serial 0` makes it; the `ca_format: v1` knob makes that one. cryptography's builder
only makes v3 certificates with a positive serial, and its loader warns on serial 0, so the v1 CA is
encoded with asn1crypto, signed with the CA key through cryptography, and never loaded by cryptography here:
an `InternalCa` carries what issuing needs (subject, public key, validity, PEM) for either format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from asn1crypto import core as asn1_core  # type: ignore[import-untyped]  # it ships no type hints
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sftlab.fleet.spec import CaFormat

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


class IssuingCa(Protocol):
    """What issuing a certificate or CRL needs of a CA: a `cryptography` certificate or an `InternalCa`."""

    @property
    def subject(self) -> x509.Name: ...

    def public_key(self) -> CertificatePublicKeyTypes: ...


@dataclass(frozen=True)
class InternalCa:
    """An FMC's InternalCA in either format, without a `cryptography` certificate object (a v1 CA's serial 0
    makes cryptography warn on loading it). `pem` is what goes on disk."""

    pem: bytes
    subject: x509.Name
    rsa_public_key: rsa.RSAPublicKey
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime
    ca_format: CaFormat

    def public_key(self) -> rsa.RSAPublicKey:
        return self.rsa_public_key


@dataclass(frozen=True)
class CaFileFacts:
    """What the lab's tools read back from a CA file on a device: its format and validity."""

    ca_format: CaFormat
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime


def make_internal_ca(
    key: rsa.RSAPrivateKey,
    *,
    fmc_uuid: str,
    not_before_utc: datetime,
    ca_format: CaFormat = "v3",
    days: int = CA_DAYS,
) -> InternalCa:
    """The FMC's InternalCA in `ca_format`: `v3` as `make_ca`, or `v1` (serial 0, no extensions) as
    `openssl x509 -req -set_serial 0` makes it; same subject/issuer, key and validity rules either way."""
    if ca_format == "v1":
        return make_v1_ca(key, fmc_uuid=fmc_uuid, not_before_utc=not_before_utc, days=days)
    cert = make_ca(key, fmc_uuid=fmc_uuid, not_before_utc=not_before_utc, days=days)
    return InternalCa(
        pem=cert_pem(cert),
        subject=cert.subject,
        rsa_public_key=_rsa_public(cert),
        not_valid_before_utc=cert.not_valid_before_utc,
        not_valid_after_utc=cert.not_valid_after_utc,
        ca_format="v3",
    )


def make_v1_ca(
    key: rsa.RSAPrivateKey, *, fmc_uuid: str, not_before_utc: datetime, days: int = CA_DAYS
) -> InternalCa:
    """A self-signed X.509 v1 InternalCA with serial 0 and no extensions, signed sha256WithRSAEncryption.

    The TBSCertificate is DER-encoded by asn1crypto (the version field is left out, as DER requires for
    v1) from the same subject and SubjectPublicKeyInfo bytes cryptography makes for the v3 CA.
    """
    _require_aware(not_before_utc)
    name = ca_name(fmc_uuid)
    not_before = not_before_utc.astimezone(UTC).replace(microsecond=0)
    not_after = not_before + timedelta(days=days)
    der = _sign_v1(key, name, not_before, not_after)
    return InternalCa(
        pem=asn1_pem.armor("CERTIFICATE", der),
        subject=name,
        rsa_public_key=key.public_key(),
        not_valid_before_utc=not_before,
        not_valid_after_utc=not_after,
        ca_format="v1",
    )


def read_ca_file(pem: bytes) -> CaFileFacts:
    """Format and validity of the CA certificate in `pem`, read with asn1crypto so that a v1 CA with
    serial 0 reads without cryptography's warning. Raises ValueError when `pem` holds no certificate."""
    try:
        _, _, der = asn1_pem.unarmor(pem)
        tbs = asn1_x509.Certificate.load(der, strict=True)["tbs_certificate"]
        version = tbs["version"].native
        validity = tbs["validity"]
        not_before, not_after = validity["not_before"].native, validity["not_after"].native
    except (ValueError, TypeError, LookupError) as exc:
        raise ValueError("expected one PEM CA certificate") from exc
    return CaFileFacts(
        ca_format="v1" if version == "v1" else "v3",
        not_valid_before_utc=not_before.astimezone(UTC),
        not_valid_after_utc=not_after.astimezone(UTC),
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
    ca_cert: IssuingCa,
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
    *, ca_cert: IssuingCa, ca_key: rsa.RSAPrivateKey, last_update_utc: datetime, days: int = 30
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


def _sign_v1(key: rsa.RSAPrivateKey, name: x509.Name, not_before: datetime, not_after: datetime) -> bytes:
    """The DER of a self-signed v1 certificate with serial 0: TBSCertificate, algorithm, signature."""
    algorithm = {"algorithm": "sha256_rsa", "parameters": asn1_core.Null()}
    dn = asn1_x509.Name.load(name.public_bytes())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v1",
            "serial_number": 0,
            "signature": algorithm,
            "issuer": dn,
            "validity": {"not_before": _x509_time(not_before), "not_after": _x509_time(not_after)},
            "subject": dn,
            "subject_public_key_info": asn1_keys.PublicKeyInfo.load(spki),
        }
    )
    signature = key.sign(tbs.dump(), padding.PKCS1v15(), hashes.SHA256())
    certificate = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )
    der: bytes = certificate.dump()
    return der


def _x509_time(moment_utc: datetime) -> asn1_x509.Time:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 (as OpenSSL and cryptography)."""
    return asn1_x509.Time({"utc_time" if moment_utc.year < 2050 else "general_time": moment_utc})


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


def _rsa_public(cert: IssuingCa) -> rsa.RSAPublicKey:
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise TypeError(f"the lab CA must hold an RSA key, not {type(public).__name__}")
    return public


def _require_aware(moment_utc: datetime) -> None:
    if moment_utc.tzinfo is None or moment_utc.utcoffset() is None:
        raise ValueError("certificate times must be timezone-aware (UTC)")

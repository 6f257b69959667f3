"""X.509 facts for the renewal: what a CA or sftunnel certificate is, whom it belongs to, what signed it.

Pure (STYLE lesson 1): PEM bytes and an explicit `now_utc` in, frozen facts out; no file, clock or network.
The facts hold fingerprints, never key material, so they may be logged, stored and sent through Celery.
Malformed input raises `CertificateError` (a `ValueError`) whose message says what was expected and never
repeats the input: a caller may have handed us a private key by mistake.

Real FMCs probably hold an X.509 v1 InternalCA with serial 0 and no extensions (device-facts 6.1); the lab
makes v3 CAs with basicConstraints (section 12). Both count as CAs here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

INTERNAL_CA_TITLE = "InternalCA"
ORG_UNIT = "Intrusion Management System"
ORGANIZATION = "Cisco Systems, Inc"

_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_KEY_FORMATS = {b"-----BEGIN RSA PRIVATE KEY-----": "pkcs1", b"-----BEGIN PRIVATE KEY-----": "pkcs8"}
_KEY_EXPECTED = "one unencrypted PEM private key ('BEGIN RSA PRIVATE KEY' or 'BEGIN PRIVATE KEY')"
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

# OpenSSL's short names, as its oneline DN form (`-nameopt compat`, the device logs) prints them.
_SHORT_NAMES: Mapping[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STREET_ADDRESS: "street",
    NameOID.TITLE: "title",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.DN_QUALIFIER: "dnQualifier",
}


class CertificateError(ValueError):
    """PEM input that is not what the caller promised; the message names what was expected."""


@dataclass(frozen=True)
class CertFacts:
    """What sftrenew needs to know about one certificate, without holding the certificate.

    `subject`/`issuer` map OpenSSL short names (`title`, `OU`, `CN`, `O`, `generationQualifier`) to values,
    because RDN order differs between real CAs; `subject_text`/`issuer_text` keep the certificate's own order
    in OpenSSL's oneline form (`/title=InternalCA/OU=...`), as device logs print it. `sha256` is the
    fingerprint of the DER (lower-case hex, no colons); `public_key_sha256` that of the SubjectPublicKeyInfo,
    so certificates and keys can be matched by callers that hold neither.
    """

    subject: Mapping[str, str] = field(hash=False)
    subject_text: str
    issuer: Mapping[str, str] = field(hash=False)
    issuer_text: str
    serial: int
    version: int
    sha256: str
    not_before_utc: datetime
    not_after_utc: datetime
    is_ca: bool
    public_key_sha256: str
    key_kind: str
    signature_hash: str | None

    @classmethod
    def from_pem(cls, data: bytes) -> CertFacts:
        """Facts of the one PEM certificate in `data`; a bundle or anything else is a `CertificateError`."""
        cert = _load_one_certificate(data, what="certificate")
        try:
            return cls.from_certificate(cert)
        except (x509.InvalidVersion, UnsupportedAlgorithm):
            raise CertificateError("expected an X.509 v1 or v3 certificate with a known algorithm") from None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertFacts:
        """Facts of an already loaded certificate (for callers that hold a `cryptography` object)."""
        der = cert.public_bytes(serialization.Encoding.DER)
        algorithm = cert.signature_hash_algorithm
        return cls(
            subject=_name_map(cert.subject),
            subject_text=oneline(cert.subject),
            issuer=_name_map(cert.issuer),
            issuer_text=oneline(cert.issuer),
            serial=cert.serial_number,
            version=1 if cert.version is x509.Version.v1 else 3,
            sha256=hashlib.sha256(der).hexdigest(),
            not_before_utc=cert.not_valid_before_utc,
            not_after_utc=cert.not_valid_after_utc,
            is_ca=_is_ca(cert),
            public_key_sha256=hashlib.sha256(cert.public_key().public_bytes(*_SPKI)).hexdigest(),
            key_kind=_key_kind(cert.public_key()),
            signature_hash=algorithm.name if algorithm is not None else None,
        )

    @property
    def title(self) -> str | None:
        return self.subject.get("title")

    @property
    def common_name(self) -> str | None:
        return self.subject.get("CN")

    @property
    def self_issued(self) -> bool:
        return self.subject_text == self.issuer_text

    def days_left(self, now_utc: datetime) -> int:
        """floor((notAfter - now) / 1 day): negative once expired, as generate_certs.pl prints it (3.2)."""
        _require_aware(now_utc)
        return math.floor((self.not_after_utc - now_utc).total_seconds() / 86400)

    def valid_at(self, now_utc: datetime) -> bool:
        _require_aware(now_utc)
        return self.not_before_utc <= now_utc <= self.not_after_utc


@dataclass(frozen=True)
class KeyFacts:
    """A private key reduced to what may be shown: its public key's fingerprint, its kind and PEM format.

    Built from PEM and then the key is dropped: these facts never hold private key bytes or objects.
    """

    public_key_sha256: str
    kind: str
    pem_format: str

    @classmethod
    def from_pem(cls, data: bytes) -> KeyFacts:
        """Facts of one unencrypted PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) key."""
        pem_format = _key_pem_format(data)
        try:
            public = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CertificateError(f"expected {_KEY_EXPECTED}; the key could not be read") from None
        return cls(
            public_key_sha256=hashlib.sha256(public.public_bytes(*_SPKI)).hexdigest(),
            kind=_key_kind(public),
            pem_format=pem_format,
        )


def key_matches(cert: CertFacts, key: KeyFacts) -> bool:
    """Whether `key` is the private half of `cert`'s public key."""
    return cert.public_key_sha256 == key.public_key_sha256


def issued_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether `ca_pem`'s key signed `cert_pem` and `cert_pem` names that CA as its issuer.

    A wrong signer is `False`, not an error: after a regeneration the old and new CA share one subject, and
    only the signature tells them apart. Works for v1 CAs (no extensions are looked at); whether the CA is
    a CA at all is `CertFacts.is_ca`'s question. Malformed PEM is a `CertificateError`.
    """
    cert = _load_one_certificate(cert_pem, what="certificate")
    ca = _load_one_certificate(ca_pem, what="CA certificate")
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def is_internal_ca_of(ca: CertFacts, fmc_uuid: str) -> bool:
    """Whether `ca` is the InternalCA an FMC with `fmc_uuid` makes (device-facts 6.1), in any RDN order."""
    expected = {"title": INTERNAL_CA_TITLE, "OU": ORG_UNIT, "CN": fmc_uuid.lower(), "O": ORGANIZATION}
    subject = {**ca.subject, "CN": ca.subject.get("CN", "").lower()}
    return ca.is_ca and dict(ca.issuer) == dict(ca.subject) and subject == expected


def is_sftunnel_cert_of(cert: CertFacts, owner_uuid: str) -> bool:
    """Whether `cert` is the sftunnel certificate of the device `owner_uuid` (device-facts 6.2)."""
    return (
        cert.common_name == "localhost"
        and (cert.title or "").lower() == owner_uuid.lower()
        and cert.subject.get("generationQualifier") == "sftunnel"
    )


def fingerprint_text(sha256_hex: str) -> str:
    """`ab12...` as OpenSSL shows fingerprints: `AB:12:...`."""
    try:
        raw = bytes.fromhex(sha256_hex)
    except ValueError:
        raise ValueError("expected a hex digest (64 hex digits for SHA-256)") from None
    return ":".join(f"{byte:02X}" for byte in raw)


def oneline(name: x509.Name) -> str:
    """A DN in OpenSSL's oneline form (`openssl x509 -subject -nameopt compat`), in the DN's own order."""
    return "".join(f"/{_short_name(attr.oid)}={_value_text(attr)}" for attr in name)


def _load_one_certificate(data: bytes, *, what: str) -> x509.Certificate:
    _require_bytes(data)
    count = data.count(_CERT_BEGIN)
    if count != 1:
        raise CertificateError(f"expected one PEM {what} ('{_CERT_BEGIN.decode()}'); found {count}")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(f"expected a PEM {what}; its content could not be decoded") from None


def _key_pem_format(data: bytes) -> str:
    """`pkcs1` or `pkcs8` from the PEM label; anything else is refused before cryptography sees it."""
    _require_bytes(data)
    blocks = data.count(b"-----BEGIN ")
    if blocks != 1:
        raise CertificateError(f"expected {_KEY_EXPECTED}; found {blocks} PEM blocks")
    if b"ENCRYPTED" in data:
        raise CertificateError(f"expected {_KEY_EXPECTED}; this key is encrypted")
    for label, pem_format in _KEY_FORMATS.items():
        if label in data:
            return pem_format
    raise CertificateError(f"expected {_KEY_EXPECTED}; found a PEM block of another kind")


def _is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE, or (for v1, which has no extensions) a self-signed certificate."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        pass
    if cert.version is not x509.Version.v1 or cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _name_map(name: x509.Name) -> Mapping[str, str]:
    """Short name to value; a repeated attribute keeps its first value (the Cisco names repeat none)."""
    values: dict[str, str] = {}
    for attr in name:
        values.setdefault(_short_name(attr.oid), _value_text(attr))
    return MappingProxyType(values)


def _short_name(oid: x509.ObjectIdentifier) -> str:
    return _SHORT_NAMES.get(oid, oid.dotted_string)


def _value_text(attr: x509.NameAttribute[str | bytes]) -> str:
    value = attr.value
    return value if isinstance(value, str) else value.hex()


def _key_kind(public: object) -> str:
    """`RSA-2048`, `EC-secp256r1`, `DSA-2048`, `Ed25519`, `Ed448`, or the key's class name."""
    if isinstance(public, rsa.RSAPublicKey | dsa.DSAPublicKey):
        family = "RSA" if isinstance(public, rsa.RSAPublicKey) else "DSA"
        return f"{family}-{public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"EC-{public.curve.name}"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public).__name__


def _require_bytes(data: object) -> None:
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"expected PEM bytes, not {type(data).__name__}")


def _require_aware(moment_utc: datetime) -> None:
    if moment_utc.tzinfo is None or moment_utc.utcoffset() is None:
        raise ValueError("expected a timezone-aware datetime (UTC) for now_utc")

"""X.509 facts for the renewal: what a CA or sftunnel certificate is, whom it belongs to, what signed it.

Pure (STYLE lesson 1): PEM bytes and an explicit `now_utc` in, frozen facts out; no file, clock or network.
The facts hold fingerprints, never key material, so they may be logged, stored and sent through Celery.
Malformed input raises `CertificateError` (a `ValueError`) whose message says what was expected and never
repeats the input: a caller may have handed us a private key by mistake.

Real FMCs probably hold an X.509 v1 InternalCA with serial 0 and no extensions (device-facts 6.1); the lab
makes v3 CAs with basicConstraints (section 12), or v1 ones with its `ca_format` knob. Both count as CAs here.

Two readers, one set of facts. cryptography reads every certificate it loads without a word. A serial of 0 or
less (the v1 CA's own, or the CA serial an authorityKeyIdentifier names in what that CA signed) it parses
today only with a `CryptographyDeprecationWarning` that would reach the operator, and it says a future
release will refuse it; such certificates, and any that cryptography refuses, are read by asn1crypto
instead, and cryptography only loads their public key (which it always will). We route by the serial rather
than hush the warning: `warnings.catch_warnings` swaps process-wide state and is not thread-safe, and the
workers read certificates from many threads. The PEM armour is removed here (base64 of the body), so
fingerprints are those of the DER bytes whichever reader ran, and signatures are checked with the issuer's
public key over the raw TBSCertificate bytes, so a v1 CA verifies what it signed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]  # it ships no type hints
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

INTERNAL_CA_TITLE = "InternalCA"
ORG_UNIT = "Intrusion Management System"
ORGANIZATION = "Cisco Systems, Inc"

_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_CERT_END = b"-----END CERTIFICATE-----"
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
_SHORT_BY_DOTTED = {oid.dotted_string: short for oid, short in _SHORT_NAMES.items()}
# asn1crypto's digest names (`SignedDigestAlgorithm.hash_algo`) to cryptography's digests.
_DIGESTS: Mapping[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha512_224": hashes.SHA512_224,
    "sha512_256": hashes.SHA512_256,
}
_EDDSA = frozenset({"ed25519", "ed448"})
_UNREADABLE = "its content could not be decoded"
# asn1crypto parses lazily and reports bad input as ValueError, TypeError, or a failed lookup.
_ASN1_ERRORS = (ValueError, TypeError, LookupError, OverflowError)

# A DN as a comparable value: per RDN, the set of (OID, value); equal exactly when cryptography's Names are.
_NameKey = tuple[frozenset[tuple[str, str]], ...]


class CertificateError(ValueError):
    """PEM input that is not what the caller promised; the message names what was expected."""


@dataclass(frozen=True)
class CertFacts:
    """What sftrenew needs to know about one certificate, without holding the certificate.

    `subject`/`issuer` map OpenSSL short names (`title`, `OU`, `CN`, `O`, `generationQualifier`) to values,
    because RDN order differs between real CAs; `subject_text`/`issuer_text` keep the certificate's own order
    in OpenSSL's oneline form (`/title=InternalCA/OU=...`), as device logs print it. `sha256` is the
    fingerprint of the DER (lower-case hex, no colons); `public_key_sha256` that of the SubjectPublicKeyInfo,
    so certificates and keys can be matched by callers that hold neither. A v1 CA with serial 0 reads like
    any other certificate (`version` 1, `serial` 0), with no warning.
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
        """Facts of the one PEM certificate in `data`; a bundle or anything else is a `CertificateError`.

        Kept by content (`_facts_of_pem`): every push of an FMC reads the same new CA, each push reads its
        peer's certificate in its material, in what the device holds and in the key check, and at 300 FTDs
        those parses were as much of the worker's CPU as a database transaction per push. The facts are
        immutable, so a kept one is as good as a fresh one."""
        if type(data) is bytes:
            return _facts_of_pem(data)
        return _read_one_certificate(data, what="certificate").facts

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertFacts:
        """Facts of an already loaded certificate (for callers that hold a `cryptography` object)."""
        der = cert.public_bytes(serialization.Encoding.DER)
        raw = _asn1_certificate(der, what="certificate")
        return _guarded(lambda: _from_cryptography(cert, der, raw), "certificate").facts

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
    def from_pem(cls, data: bytes, *, checked: bool = True) -> KeyFacts:
        """Facts of one unencrypted PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) key.

        `checked=False` skips OpenSSL's consistency check of an RSA key's private parts (some 40 ms of CPU
        each): only for a key already checked once, e.g. the material the regeneration checked and stored,
        whose public half is all a push compares."""
        pem_format = _key_pem_format(data)
        try:
            public = serialization.load_pem_private_key(
                data, password=None, unsafe_skip_rsa_key_validation=not checked
            ).public_key()
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


#: What `key_works_with` signs: any bytes do; these say whose proof it was.
_PROOF = b"sftrenew: this key signs what its certificate's public key verifies"


def key_works_with(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the private key in `key_pem` is the private half of `cert_pem`'s public key, proven as a TLS
    handshake uses the pair: the key signs, and the certificate's public key verifies the signature.

    About 1 ms of CPU for an RSA-2048 key, where OpenSSL's consistency check of its private parts on loading
    costs some 40 ms (at 300 peers, 12 s per regeneration's read-back). The check is skipped on loading, as
    the signature proves more than it does: a key whose private parts are wrong signs nothing that verifies.
    Malformed PEM is a `CertificateError` that never repeats the input."""
    cert = _read_one_certificate(cert_pem, what="certificate")
    _key_pem_format(key_pem)
    try:
        private = serialization.load_pem_private_key(
            key_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateError(f"expected {_KEY_EXPECTED}; the key could not be read") from None
    if private.public_key().public_bytes(*_SPKI) != cert.public_key.public_bytes(*_SPKI):
        return False
    try:
        if isinstance(private, rsa.RSAPrivateKey) and isinstance(cert.public_key, rsa.RSAPublicKey):
            scheme = (padding.PKCS1v15(), hashes.SHA256())
            cert.public_key.verify(private.sign(_PROOF, *scheme), _PROOF, *scheme)
        elif isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            cert.public_key, ec.EllipticCurvePublicKey
        ):
            cert.public_key.verify(
                private.sign(_PROOF, ec.ECDSA(hashes.SHA256())), _PROOF, ec.ECDSA(hashes.SHA256())
            )
        elif isinstance(private, ed25519.Ed25519PrivateKey) and isinstance(
            cert.public_key, ed25519.Ed25519PublicKey
        ):
            cert.public_key.verify(private.sign(_PROOF), _PROOF)
        else:
            return False  # a kind of key sftunnel does not use (device-facts 6.2: RSA)
    except InvalidSignature:
        return False
    return True


def issued_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether `ca_pem`'s key signed `cert_pem` and `cert_pem` names that CA as its issuer.

    A wrong signer is `False`, not an error: after a regeneration the old and new CA share one subject, and
    only the signature tells them apart. Works for v1 CAs with serial 0 (no extensions are looked at, and
    the signature is checked with the CA's public key over the raw TBSCertificate); whether the CA is a CA
    at all is `CertFacts.is_ca`'s question. Malformed PEM is a `CertificateError`.
    """
    cert = _read_one_certificate(cert_pem, what="certificate")
    ca = _read_one_certificate(ca_pem, what="CA certificate")
    return cert.issuer_key == ca.subject_key and _signed_by(ca.public_key, cert.signed)


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
    return _oneline_pairs([(attr.oid.dotted_string, _value_text(attr)) for attr in name])


# ---------------------------------------------------------------- reading a certificate


@dataclass(frozen=True)
class _Signed:
    """What a signature check needs: the signed bytes as they are in the DER, the signature, its scheme.

    `algorithm` is asn1crypto's family name (`rsassa_pkcs1v15`, `rsassa_pss`, `ecdsa`, `dsa`, `ed25519`,
    `ed448`); `digest`/`rsa_padding` are None where the family has none or the digest is unknown to us.
    """

    tbs: bytes
    signature: bytes
    algorithm: str
    digest: hashes.HashAlgorithm | None
    rsa_padding: padding.AsymmetricPadding | None


@dataclass(frozen=True)
class _Certificate:
    """One certificate as this module uses it internally: its facts and what chain checks compare."""

    facts: CertFacts
    subject_key: _NameKey
    issuer_key: _NameKey
    public_key: PublicKeyTypes
    signed: _Signed


@dataclass(frozen=True)
class _Fields:
    """The fields both readers produce, before the facts that are computed from them the same way."""

    subject: list[tuple[str, str]]
    subject_key: _NameKey
    issuer: list[tuple[str, str]]
    issuer_key: _NameKey
    serial: int
    version: int
    not_before_utc: datetime
    not_after_utc: datetime
    basic_ca: bool | None
    public_key: PublicKeyTypes
    signature_hash: str | None


def _read_one_certificate(data: bytes, *, what: str) -> _Certificate:
    """The one PEM certificate in `data`, read by cryptography when it reads it silently, else by asn1crypto.

    A serial of 0 or less never reaches cryptography's loader (today it warns, later it will refuse): the
    certificate's own, or the CA serial an authorityKeyIdentifier names (OpenSSL 3 writes `serial:00` there
    in every certificate a v1 serial-0 CA signs, as that CA has no key identifier to point to). A
    certificate cryptography refuses for any other reason gets a second reading from asn1crypto, which must
    give the same facts (the unit tests compare both readers on every vector).
    """
    der = _der_of_pem(data, what=what)
    raw = _asn1_certificate(der, what=what)
    if _serials_are_positive(raw, what=what):
        try:
            return _guarded(lambda: _from_cryptography(x509.load_der_x509_certificate(der), der, raw), what)
        except CertificateError:
            pass  # refused at load or on a field it parses lazily: asn1crypto reads it, or says why not
    return _guarded(lambda: _from_asn1(raw, der, what=what), what)


@functools.lru_cache(maxsize=64)
def _facts_of_pem(data: bytes) -> CertFacts:
    """`CertFacts.from_pem` for `bytes`, kept for the last 64 contents (a refusal is not kept: it raises)."""
    return _read_one_certificate(data, what="certificate").facts


def _der_of_pem(data: bytes, *, what: str) -> bytes:
    """The DER bytes inside the one `BEGIN CERTIFICATE` block: the armour off, the base64 body decoded."""
    _require_bytes(data)
    text = bytes(data)
    count = text.count(_CERT_BEGIN)
    if count != 1:
        raise CertificateError(f"expected one PEM {what} ('{_CERT_BEGIN.decode()}'); found {count}")
    start = text.index(_CERT_BEGIN) + len(_CERT_BEGIN)
    end = text.find(_CERT_END, start)
    der = b""
    if end >= 0:
        try:
            der = base64.b64decode(b"".join(text[start:end].split()), validate=True)
        except binascii.Error:
            der = b""
    if not der:
        raise CertificateError(f"expected a PEM {what}; {_UNREADABLE}")
    return der


def _asn1_certificate(der: bytes, *, what: str) -> asn1_x509.Certificate:
    """asn1crypto's view of `der`: the outer structure checked, the fields parsed lazily as they are read."""
    try:
        raw = asn1_x509.Certificate.load(der, strict=True)
        raw["tbs_certificate"]["subject_public_key_info"].dump()
    except _ASN1_ERRORS:
        raise CertificateError(f"expected a PEM {what}; {_UNREADABLE}") from None
    return raw


def _serials_are_positive(raw: asn1_x509.Certificate, *, what: str) -> bool:
    """Whether cryptography may load `raw` without its serial-number warning: the certificate's serial and
    the one its authorityKeyIdentifier names (if any) are positive. Extensions asn1crypto cannot parse are
    left to cryptography to judge."""
    try:
        serial: int = raw["tbs_certificate"]["serial_number"].native
    except _ASN1_ERRORS:
        raise CertificateError(f"expected a PEM {what}; {_UNREADABLE}") from None
    try:
        authority = raw.authority_key_identifier_value
        authority_serial: int | None = (
            None if authority is None else authority["authority_cert_serial_number"].native
        )
    except _ASN1_ERRORS:
        authority_serial = None
    return serial > 0 and (authority_serial is None or authority_serial > 0)


def _guarded(read: Callable[[], _Certificate], what: str) -> _Certificate:
    """Run one reader, turning what it cannot read (a version, an algorithm, a field) into a
    `CertificateError`; cryptography parses some fields only when they are first asked for."""
    try:
        return read()
    except (x509.InvalidVersion, UnsupportedAlgorithm):
        raise CertificateError("expected an X.509 v1 or v3 certificate with a known algorithm") from None
    except CertificateError:
        raise
    except ValueError:
        raise CertificateError(f"expected a PEM {what}; {_UNREADABLE}") from None


def _from_cryptography(cert: x509.Certificate, der: bytes, raw: asn1_x509.Certificate) -> _Certificate:
    algorithm = cert.signature_hash_algorithm
    try:
        basic_ca: bool | None = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        basic_ca = None
    fields = _Fields(
        subject=_pairs(cert.subject),
        subject_key=_name_key(cert.subject),
        issuer=_pairs(cert.issuer),
        issuer_key=_name_key(cert.issuer),
        serial=cert.serial_number,
        version=1 if cert.version is x509.Version.v1 else 3,
        not_before_utc=cert.not_valid_before_utc,
        not_after_utc=cert.not_valid_after_utc,
        basic_ca=basic_ca,
        public_key=cert.public_key(),
        signature_hash=algorithm.name if algorithm is not None else None,
    )
    return _assemble(fields, der, _asn1_signed(raw, strict=False))


def _from_asn1(raw: asn1_x509.Certificate, der: bytes, *, what: str) -> _Certificate:
    """The same fields from asn1crypto: for serial-0 certificates and what cryptography refuses."""
    try:
        tbs = raw["tbs_certificate"]
        version = {"v1": 1, "v3": 3}.get(tbs["version"].native)
        if version is None:
            raise x509.InvalidVersion("only v1 and v3", 0)
        signed = _asn1_signed(raw, strict=True)
        constraints = raw.basic_constraints_value
        fields = _Fields(
            subject=_asn1_pairs(tbs["subject"]),
            subject_key=_asn1_name_key(tbs["subject"]),
            issuer=_asn1_pairs(tbs["issuer"]),
            issuer_key=_asn1_name_key(tbs["issuer"]),
            serial=tbs["serial_number"].native,
            version=version,
            not_before_utc=tbs["validity"]["not_before"].native.astimezone(UTC),
            not_after_utc=tbs["validity"]["not_after"].native.astimezone(UTC),
            basic_ca=None if constraints is None else bool(constraints["ca"].native),
            public_key=serialization.load_der_public_key(tbs["subject_public_key_info"].dump()),
            signature_hash=None if signed.digest is None else signed.digest.name,
        )
    except _ASN1_ERRORS:
        raise CertificateError(f"expected a PEM {what}; {_UNREADABLE}") from None
    return _assemble(fields, der, signed)


def _assemble(fields: _Fields, der: bytes, signed: _Signed) -> _Certificate:
    public = fields.public_key
    facts = CertFacts(
        subject=_name_map(fields.subject),
        subject_text=_oneline_pairs(fields.subject),
        issuer=_name_map(fields.issuer),
        issuer_text=_oneline_pairs(fields.issuer),
        serial=fields.serial,
        version=fields.version,
        sha256=hashlib.sha256(der).hexdigest(),
        not_before_utc=fields.not_before_utc,
        not_after_utc=fields.not_after_utc,
        is_ca=_is_ca(fields, signed),
        public_key_sha256=hashlib.sha256(public.public_bytes(*_SPKI)).hexdigest(),
        key_kind=_key_kind(public),
        signature_hash=fields.signature_hash,
    )
    return _Certificate(facts, fields.subject_key, fields.issuer_key, public, signed)


def _asn1_signed(raw: asn1_x509.Certificate, *, strict: bool) -> _Signed:
    """The signed bytes, signature and scheme from the DER itself, the same for both readers.

    `strict`: an unknown signature algorithm is an `UnsupportedAlgorithm` (the asn1crypto reader), or only
    a certificate no signature check will accept (cryptography already read the facts).
    """
    algorithm_id = raw["signature_algorithm"]
    try:
        algorithm: str = algorithm_id.signature_algo
        digest = None if algorithm in _EDDSA else _DIGESTS[algorithm_id.hash_algo]()
    except (ValueError, KeyError):
        if strict:
            raise UnsupportedAlgorithm("unknown signature algorithm") from None
        algorithm, digest = "unknown", None
    rsa_padding: padding.AsymmetricPadding | None = None
    if algorithm == "rsassa_pkcs1v15":
        rsa_padding = padding.PKCS1v15()
    elif algorithm == "rsassa_pss" and digest is not None:
        rsa_padding = _pss(algorithm_id)
    return _Signed(raw["tbs_certificate"].dump(), raw.signature, algorithm, digest, rsa_padding)


def _pss(algorithm_id: asn1_x509.SignedDigestAlgorithm) -> padding.PSS | None:
    """RSA-PSS as its parameters say (MGF1 digest, salt length); None when we do not know the digest."""
    parameters = algorithm_id["parameters"]
    try:
        mgf_digest = _DIGESTS[parameters["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
        salt_length: int = parameters["salt_length"].native
    except _ASN1_ERRORS:
        return None
    return padding.PSS(mgf=padding.MGF1(mgf_digest), salt_length=salt_length)


def _signed_by(public: PublicKeyTypes, signed: _Signed) -> bool:
    """Whether `public` made `signed`'s signature; a scheme that does not fit the key is a plain no."""
    try:
        _verify(public, signed)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _verify(public: PublicKeyTypes, signed: _Signed) -> None:
    """Raises `InvalidSignature` unless `public` signed `signed.tbs` with `signed`'s scheme."""
    signature, data, digest = signed.signature, signed.tbs, signed.digest
    if isinstance(public, rsa.RSAPublicKey) and signed.rsa_padding is not None and digest is not None:
        public.verify(signature, data, signed.rsa_padding, digest)
    elif isinstance(public, ec.EllipticCurvePublicKey) and signed.algorithm == "ecdsa" and digest is not None:
        public.verify(signature, data, ec.ECDSA(digest))
    elif isinstance(public, dsa.DSAPublicKey) and signed.algorithm == "dsa" and digest is not None:
        public.verify(signature, data, digest)
    elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and signed.algorithm in _EDDSA:
        public.verify(signature, data)
    else:
        raise InvalidSignature


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


def _is_ca(fields: _Fields, signed: _Signed) -> bool:
    """basicConstraints CA:TRUE, or (for v1, which has no extensions) a self-signed certificate."""
    if fields.basic_ca is not None:
        return fields.basic_ca
    if fields.version != 1 or fields.subject_key != fields.issuer_key:
        return False
    return _signed_by(fields.public_key, signed)


def _pairs(name: x509.Name) -> list[tuple[str, str]]:
    return [(attr.oid.dotted_string, _value_text(attr)) for attr in name]


def _name_key(name: x509.Name) -> _NameKey:
    return tuple(frozenset((attr.oid.dotted_string, _value_text(attr)) for attr in rdn) for rdn in name.rdns)


def _asn1_pairs(name: asn1_x509.Name) -> list[tuple[str, str]]:
    return [pair for rdn in name.chosen for pair in _asn1_rdn(rdn)]


def _asn1_name_key(name: asn1_x509.Name) -> _NameKey:
    return tuple(frozenset(_asn1_rdn(rdn)) for rdn in name.chosen)


def _asn1_rdn(rdn: asn1_x509.RelativeDistinguishedName) -> list[tuple[str, str]]:
    """(OID, text) per attribute; a value that is not a string shows as the hex of its content octets
    (cryptography shows the few such attributes, like x500UniqueIdentifier, as their bytes)."""
    pairs = []
    for attribute in rdn:
        value = attribute["value"]
        native = value.native
        text = native if isinstance(native, str) else bytes(value.contents or b"").hex()
        pairs.append((attribute["type"].dotted, text))
    return pairs


def _name_map(pairs: list[tuple[str, str]]) -> Mapping[str, str]:
    """Short name to value; a repeated attribute keeps its first value (the Cisco names repeat none)."""
    values: dict[str, str] = {}
    for dotted, value in pairs:
        values.setdefault(_SHORT_BY_DOTTED.get(dotted, dotted), value)
    return MappingProxyType(values)


def _oneline_pairs(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"/{_SHORT_BY_DOTTED.get(dotted, dotted)}={value}" for dotted, value in pairs)


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

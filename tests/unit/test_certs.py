"""pipeline.certs against real vectors: v1 certificates made by the openssl CLI, v3 ones made by lab.pki.

The openssl vectors are what real FMCs probably hold (device-facts 6.1: a v1 InternalCA, serial 0, no
extensions); every expected fingerprint, date and DN below is what the openssl CLI itself prints for them.
Keys are generated at test time into a temp folder; none is written in this file (STYLE 12).

Every test runs with warnings as errors: cryptography warns when it loads a serial-0 certificate, and that
warning must never reach an operator, so reading a real FMC's CA must not trigger it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from pipeline import certs
from pipeline.certs import (
    CertFacts,
    CertificateError,
    KeyFacts,
    fingerprint_text,
    is_internal_ca_of,
    is_sftunnel_cert_of,
    issued_by,
    key_matches,
    key_works_with,
)
from pipeline.parsing import gmt_date_utc, parse_openssl_enddate
from sftlab.fleet import pki

# cryptography warns when it loads a serial-0 certificate (the openssl v1 vectors, like real FMC CAs); the
# product reads them without cryptography's loader, so no warning may show here (the canary pins the
# library's own behaviour).
pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(autouse=True)
def _no_kept_facts() -> None:
    """Each test reads its certificates afresh: `CertFacts.from_pem` keeps facts by content, and the tests
    below swap cryptography's loader to show which reader a certificate goes through."""
    certs._facts_of_pem.cache_clear()


FMC_UUID = "cdb123c8-4347-11ef-aca1-f3aa241412a1"
FTD_UUID = "c8d5d5c6-87c9-11ef-a993-b9831565bc4e"
OTHER_FMC_UUID = "0a1b2c3d-4347-11ef-aca1-f3aa241412a1"
CA_SUBJECT = f"/title=InternalCA/OU=Intrusion Management System/CN={FMC_UUID}/O=Cisco Systems, Inc"
DEVICE_SUBJECT = (
    f"/CN=localhost/OU=Intrusion Management System/O=Cisco Systems, Inc/title={FTD_UUID}"
    "/generationQualifier=sftunnel"
)
# The run of device-facts 3.2: unix time 1728915794, against a CA made on Oct 11 2024 10:12:50.
CISCO_NOW = datetime.fromtimestamp(1728915794, tz=UTC)


def _openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass(frozen=True)
class OpensslCert:
    """A certificate (and its key in both PEM forms) made by the openssl CLI, with openssl's own readings."""

    pem: bytes
    key_pkcs8: bytes
    key_pkcs1: bytes
    sha256_colons: str
    subject_compat: str
    not_after_line: str
    not_before_line: str
    der_sha256: str
    public_key_der_sha256: str


def _read(cert: Path, key: Path) -> OpensslCert:
    pkcs1 = key.with_suffix(".pkcs1")
    _openssl("rsa", "-in", key, "-traditional", "-out", pkcs1)
    pub = key.with_suffix(".pub.der")
    (key.parent / "pub.pem").write_text(_openssl("x509", "-in", cert, "-noout", "-pubkey") + "\n")
    _openssl("pkey", "-pubin", "-in", key.parent / "pub.pem", "-outform", "DER", "-out", pub)
    return OpensslCert(
        pem=cert.read_bytes(),
        key_pkcs8=key.read_bytes(),
        key_pkcs1=pkcs1.read_bytes(),
        sha256_colons=_openssl("x509", "-in", cert, "-noout", "-fingerprint", "-sha256").split("=", 1)[1],
        subject_compat=_openssl("x509", "-in", cert, "-noout", "-subject", "-nameopt", "compat"),
        not_after_line=_openssl("x509", "-in", cert, "-noout", "-enddate"),
        not_before_line=_openssl("x509", "-in", cert, "-noout", "-startdate"),
        der_sha256=_der_sha256(cert),
        public_key_der_sha256=hashlib.sha256(pub.read_bytes()).hexdigest(),
    )


def _der_sha256(cert: Path) -> str:
    """SHA-256 of the DER as the openssl CLI writes it (`-outform DER`), not as any Python library does."""
    der = cert.with_suffix(".der")
    _openssl("x509", "-in", cert, "-outform", "DER", "-out", der)
    return hashlib.sha256(der.read_bytes()).hexdigest()


def _make_ca(folder: Path, subject: str) -> OpensslCert:
    """A v1 self-signed CA with serial 0 and no extensions, as `openssl x509 -req -signkey` makes it."""
    folder.mkdir()
    key, csr, cert = folder / "ca.key", folder / "ca.csr", folder / "ca.pem"
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", subject, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-signkey", key, "-set_serial", "0", "-days", "3650", "-out", cert)
    return _read(cert, key)


def _make_device(folder: Path, ca: Path) -> OpensslCert:
    folder.mkdir()
    key, csr, cert = folder / "dev.key", folder / "dev.csr", folder / "dev.pem"
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", DEVICE_SUBJECT, "-out", csr
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca / "ca.pem", "-CAkey", ca / "ca.key",
        "-set_serial", "5", "-days", "3650", "-out", cert,
    )  # fmt: skip
    return _read(cert, key)


def _make_v3_device(folder: Path, ca: Path) -> OpensslCert:
    """A v3 leaf (basicConstraints CA:FALSE, both key usages) signed by the v1 serial-0 CA in `ca`."""
    folder.mkdir()
    key, csr, cert, ext = folder / "dev.key", folder / "dev.csr", folder / "dev.pem", folder / "ext.cnf"
    ext.write_text(
        "[v3]\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth, clientAuth\n"
    )
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", DEVICE_SUBJECT, "-out", csr
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca / "ca.pem", "-CAkey", ca / "ca.key", "-set_serial", "6",
        "-days", "3650", "-extfile", ext, "-extensions", "v3", "-out", cert,
    )  # fmt: skip
    return _read(cert, key)


@dataclass(frozen=True)
class Vectors:
    ca: OpensslCert
    device: OpensslCert
    v3_device: OpensslCert  # a v3 leaf the v1 CA signed
    foreign_ca: OpensslCert  # another FMC's CA
    twin_ca: OpensslCert  # same subject as `ca`, another key: what a regeneration leaves behind
    reordered_ca: OpensslCert  # the RDN order of the older CA in R's packet capture
    impostor_pem: bytes  # v1, the InternalCA subject as issuer too, but signed by the twin's key


@pytest.fixture(scope="session")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Vectors:
    root = tmp_path_factory.mktemp("openssl-vectors")
    ca = _make_ca(root / "ca", CA_SUBJECT)
    return Vectors(
        ca=ca,
        device=_make_device(root / "device", root / "ca"),
        v3_device=_make_v3_device(root / "v3-device", root / "ca"),
        foreign_ca=_make_ca(root / "foreign", CA_SUBJECT.replace(FMC_UUID, OTHER_FMC_UUID)),
        twin_ca=_make_ca(root / "twin", CA_SUBJECT),
        reordered_ca=_make_ca(
            root / "reordered",
            f"/title=InternalCA/CN={FMC_UUID}/OU=Intrusion Management System/O=Cisco Systems, Inc",
        ),
        impostor_pem=_sign_with(root / "ca" / "ca.csr", root / "twin", root / "impostor.pem"),
    )


def _sign_with(csr: Path, ca: Path, out: Path) -> bytes:
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca / "ca.pem", "-CAkey", ca / "ca.key",
        "-set_serial", "0", "-days", "3650", "-out", out,
    )  # fmt: skip
    return out.read_bytes()


@dataclass(frozen=True)
class LabVectors:
    ca_pem: bytes
    ca_key: rsa.RSAPrivateKey
    device_pem: bytes
    device_key: rsa.RSAPrivateKey
    expired_ca_pem: bytes


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def lab_vectors() -> LabVectors:
    ca_key, device_key = _new_key(), _new_key()
    ca = pki.make_ca(ca_key, fmc_uuid=FMC_UUID, not_before_utc=datetime(2024, 10, 11, 10, 12, 50, tzinfo=UTC))
    device = pki.make_sftunnel_cert(
        ca_cert=ca, ca_key=ca_key, key=device_key, owner_uuid=FTD_UUID, serial=7, not_before_utc=CISCO_NOW
    )
    expired = pki.make_ca(
        _new_key(), fmc_uuid=FMC_UUID, not_before_utc=datetime(2014, 10, 11, 10, 12, 50, tzinfo=UTC)
    )
    return LabVectors(pki.cert_pem(ca), ca_key, pki.cert_pem(device), device_key, pki.cert_pem(expired))


def _pkcs8(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def _assert_not_echoed(exc: BaseException, pem: bytes) -> None:
    text = f"{exc!s} {exc!r}"
    for line in _body_lines(pem):
        assert line[:24] not in text
    # A traceback must not show cryptography's own error (and whatever it quoted) either.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


# ---------------------------------------------------------------- v1 vectors from the openssl CLI


def test_v1_ca_facts_match_what_openssl_prints(vectors: Vectors) -> None:
    ca = CertFacts.from_pem(vectors.ca.pem)

    assert ca.version == 1
    assert ca.serial == 0
    assert ca.sha256 == vectors.ca.sha256_colons.replace(":", "").lower()
    assert fingerprint_text(ca.sha256) == vectors.ca.sha256_colons
    assert f"subject={ca.subject_text}" == vectors.ca.subject_compat
    assert ca.subject_text == CA_SUBJECT
    assert ca.issuer_text == CA_SUBJECT
    assert dict(ca.subject) == {
        "title": "InternalCA",
        "OU": "Intrusion Management System",
        "CN": FMC_UUID,
        "O": "Cisco Systems, Inc",
    }
    assert ca.not_after_utc == parse_openssl_enddate(vectors.ca.not_after_line)
    assert ca.not_after_utc - ca.not_before_utc == timedelta(days=3650)
    assert ca.public_key_sha256 == vectors.ca.public_key_der_sha256
    assert (ca.key_kind, ca.signature_hash) == ("RSA-2048", "sha256")
    assert (ca.title, ca.common_name) == ("InternalCA", FMC_UUID)
    assert ca.is_ca  # self-signed v1: no basicConstraints to ask
    assert ca.self_issued


@pytest.mark.filterwarnings("default")
def test_canary_cryptography_still_loads_serial_zero(vectors: Vectors) -> None:
    """Real FMC CAs probably have serial 0 (device-facts 6.1). cryptography 50 loads them with a deprecation
    warning and says a future release will refuse them; pipeline.certs therefore reads them with asn1crypto.
    When this test fails, that release is here: the fallback tests below say whether the product copes
    (they must pass), and this canary is updated to expect the refusal."""
    with pytest.warns(CryptographyDeprecationWarning, match="serial number which wasn't positive"):
        assert x509.load_pem_x509_certificate(vectors.ca.pem).serial_number == 0


def test_a_v1_serial_zero_ca_is_read_with_warnings_as_errors(vectors: Vectors) -> None:
    """Explicitly, whatever the pytest configuration: the CA of a real FMC shows the operator no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ca = CertFacts.from_pem(vectors.ca.pem)
        assert issued_by(vectors.ca.pem, vectors.ca.pem)

    assert (ca.version, ca.serial, ca.is_ca) == (1, 0, True)
    assert ca.sha256 == vectors.ca.der_sha256  # the DER the openssl CLI writes, hashed
    assert ca.subject_text == ca.issuer_text == CA_SUBJECT
    assert ca.not_before_utc == gmt_date_utc(vectors.ca.not_before_line.removeprefix("notBefore="))
    assert ca.not_after_utc == parse_openssl_enddate(vectors.ca.not_after_line)
    assert is_internal_ca_of(ca, FMC_UUID)


def test_a_v3_leaf_signed_by_a_v1_serial_zero_ca(vectors: Vectors) -> None:
    leaf = CertFacts.from_pem(vectors.v3_device.pem)

    assert (leaf.version, leaf.serial, leaf.is_ca) == (3, 6, False)
    assert leaf.sha256 == vectors.v3_device.der_sha256
    assert leaf.issuer_text == CA_SUBJECT
    assert is_sftunnel_cert_of(leaf, FTD_UUID)
    assert issued_by(vectors.v3_device.pem, vectors.ca.pem)
    assert not issued_by(vectors.v3_device.pem, vectors.twin_ca.pem)  # same subject, other key
    assert not issued_by(vectors.v3_device.pem, vectors.foreign_ca.pem)
    assert key_matches(leaf, KeyFacts.from_pem(vectors.v3_device.key_pkcs1))
    assert not key_matches(leaf, KeyFacts.from_pem(vectors.ca.key_pkcs1))


def test_a_serial_zero_certificate_never_reaches_cryptographys_loader(
    vectors: Vectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings are not hushed (catch_warnings is process-wide and the workers read in threads): the
    loader that warns is simply not called for a serial of 0 or less."""
    loaded: list[int] = []
    real_loader = x509.load_der_x509_certificate

    def spy(der: bytes) -> x509.Certificate:
        cert = real_loader(der)
        loaded.append(cert.serial_number)
        return cert

    monkeypatch.setattr(x509, "load_der_x509_certificate", spy)
    CertFacts.from_pem(vectors.ca.pem)
    issued_by(vectors.device.pem, vectors.ca.pem)

    assert loaded == [5]  # the device certificate only


def _refuse_certificates(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Stands in for a future cryptography release that refuses serial 0 (its deprecation warning says one
    will): its certificate loaders raise ValueError for everything, so only the asn1crypto reader can
    answer. Returns the DER of every certificate that was refused."""
    refused: list[bytes] = []

    def refuse(data: bytes) -> x509.Certificate:
        refused.append(data)
        raise ValueError("refused by a future cryptography")

    monkeypatch.setattr(x509, "load_der_x509_certificate", refuse)
    monkeypatch.setattr(x509, "load_pem_x509_certificate", refuse)
    certs._facts_of_pem.cache_clear()  # facts kept from the real loader would hide the fallback
    return refused


def _every_pem(vectors: Vectors, lab_vectors: LabVectors) -> dict[str, bytes]:
    return {
        "ca": vectors.ca.pem,
        "device": vectors.device.pem,
        "v3_device": vectors.v3_device.pem,
        "foreign_ca": vectors.foreign_ca.pem,
        "twin_ca": vectors.twin_ca.pem,
        "reordered_ca": vectors.reordered_ca.pem,
        "impostor": vectors.impostor_pem,
        "lab_ca": lab_vectors.ca_pem,
        "lab_device": lab_vectors.device_pem,
        "lab_expired_ca": lab_vectors.expired_ca_pem,
    }


def test_the_fallback_reader_gives_the_same_facts_and_chain_answers(
    vectors: Vectors, lab_vectors: LabVectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    pems = _every_pem(vectors, lab_vectors)
    facts = {name: CertFacts.from_pem(pem) for name, pem in pems.items()}
    chains = {(a, b): issued_by(pems[a], pems[b]) for a in pems for b in pems}

    refused = _refuse_certificates(monkeypatch)
    fallback_facts = {name: CertFacts.from_pem(pem) for name, pem in pems.items()}
    fallback_chains = {(a, b): issued_by(pems[a], pems[b]) for a in pems for b in pems}

    assert len(refused) >= 7  # every certificate with a positive serial went to cryptography first
    assert fallback_facts == facts
    for name in pems:  # the mappings are not part of equality; compare them too
        assert dict(fallback_facts[name].subject) == dict(facts[name].subject)
        assert dict(fallback_facts[name].issuer) == dict(facts[name].issuer)
    assert fallback_chains == chains
    # Each CA signed itself (the impostor excepted) and its leaves; the impostor holds the CA's key under
    # the CA's name, so it "issued" what the CA signed, and the twin's key signed it.
    assert {pair for pair, signed in chains.items() if signed} == {
        ("ca", "ca"),
        ("device", "ca"),
        ("v3_device", "ca"),
        ("ca", "impostor"),
        ("device", "impostor"),
        ("v3_device", "impostor"),
        ("impostor", "twin_ca"),
        ("twin_ca", "twin_ca"),
        ("foreign_ca", "foreign_ca"),
        ("reordered_ca", "reordered_ca"),
        ("lab_ca", "lab_ca"),
        ("lab_device", "lab_ca"),
        ("lab_expired_ca", "lab_expired_ca"),
    }


def test_facts_are_kept_by_content_and_a_refusal_is_not(vectors: Vectors) -> None:
    """A push reads the same CA and certificate several times; the second reading of the same bytes is the
    first one's facts; garbage raises every time."""
    first = CertFacts.from_pem(vectors.device.pem)
    assert CertFacts.from_pem(bytes(vectors.device.pem)) is first
    assert CertFacts.from_pem(vectors.ca.pem) != first
    for _ in range(2):
        with pytest.raises(CertificateError):
            CertFacts.from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert certs._facts_of_pem.cache_info().currsize == 2


def test_v1_device_cert_facts(vectors: Vectors) -> None:
    device = CertFacts.from_pem(vectors.device.pem)

    assert (device.version, device.serial) == (1, 5)
    assert device.sha256 == vectors.device.sha256_colons.replace(":", "").lower()
    assert f"subject={device.subject_text}" == vectors.device.subject_compat
    assert device.issuer_text == CA_SUBJECT
    assert device.subject["generationQualifier"] == "sftunnel"
    assert (device.title, device.common_name) == (FTD_UUID, "localhost")
    assert not device.is_ca
    assert not device.self_issued


def test_days_left_and_validity_against_an_explicit_now(vectors: Vectors) -> None:
    ca = CertFacts.from_pem(vectors.ca.pem)
    end, second = ca.not_after_utc, timedelta(seconds=1)

    assert ca.days_left(end - timedelta(days=10) - second) == 10
    assert ca.days_left(end - timedelta(days=10) + second) == 9
    assert ca.days_left(end - second) == 0
    assert ca.days_left(end) == 0
    assert ca.days_left(end + second) == -1  # floor, as generate_certs.pl prints it
    assert ca.days_left(end + timedelta(days=30)) == -30
    assert ca.valid_at(ca.not_before_utc)
    assert ca.valid_at(end)
    assert not ca.valid_at(end + second)
    assert not ca.valid_at(ca.not_before_utc - second)


def test_now_must_be_timezone_aware(vectors: Vectors) -> None:
    ca = CertFacts.from_pem(vectors.ca.pem)
    naive = datetime(2030, 1, 1)  # noqa: DTZ001 - the misuse under test
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.days_left(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.valid_at(naive)


@pytest.mark.parametrize("form", ["key_pkcs1", "key_pkcs8"])
def test_keys_match_their_certificate_in_both_pem_forms(vectors: Vectors, form: str) -> None:
    device = CertFacts.from_pem(vectors.device.pem)
    key = KeyFacts.from_pem(getattr(vectors.device, form))

    assert key.pem_format == form.removeprefix("key_")
    assert key.kind == "RSA-2048"
    assert key.public_key_sha256 == vectors.device.public_key_der_sha256
    assert key_matches(device, key)
    assert not key_matches(CertFacts.from_pem(vectors.ca.pem), key)


def test_the_pem_labels_are_what_the_forms_say(vectors: Vectors) -> None:
    assert vectors.device.key_pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert vectors.device.key_pkcs8.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_key_facts_hold_no_key_material(vectors: Vectors) -> None:
    key = KeyFacts.from_pem(vectors.device.key_pkcs1)

    assert [f.name for f in dataclasses.fields(KeyFacts)] == ["public_key_sha256", "kind", "pem_format"]
    assert all(isinstance(value, str) for value in vars(key).values())
    for line in _body_lines(vectors.device.key_pkcs1):
        assert line[:24] not in repr(key)


def test_issued_by_checks_the_signature_not_just_the_name(vectors: Vectors) -> None:
    assert issued_by(vectors.device.pem, vectors.ca.pem)
    assert issued_by(vectors.ca.pem, vectors.ca.pem)
    # Same subject, other key: the CA a regeneration replaced. Only the signature tells them apart.
    assert CertFacts.from_pem(vectors.twin_ca.pem).subject_text == CA_SUBJECT
    assert not issued_by(vectors.device.pem, vectors.twin_ca.pem)
    assert not issued_by(vectors.device.pem, vectors.foreign_ca.pem)
    assert not issued_by(vectors.ca.pem, vectors.device.pem)


def test_the_right_key_under_another_name_is_not_the_issuer(vectors: Vectors) -> None:
    """The issuer name must match too: the CA's own key, self-signed under another FMC's name."""
    key = serialization.load_pem_private_key(vectors.ca.key_pkcs8, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    name = pki.ca_name(OTHER_FMC_UUID)
    start = datetime(2024, 10, 11, tzinfo=UTC)
    renamed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    renamed_pem = renamed.public_bytes(serialization.Encoding.PEM)

    assert (
        CertFacts.from_pem(renamed_pem).public_key_sha256
        == CertFacts.from_pem(vectors.ca.pem).public_key_sha256
    )
    assert not issued_by(vectors.device.pem, renamed_pem)


def test_internal_ca_of_its_fmc_only(vectors: Vectors) -> None:
    ca = CertFacts.from_pem(vectors.ca.pem)

    assert is_internal_ca_of(ca, FMC_UUID)
    assert is_internal_ca_of(ca, FMC_UUID.upper())
    assert is_internal_ca_of(CertFacts.from_pem(vectors.reordered_ca.pem), FMC_UUID)
    assert not is_internal_ca_of(ca, OTHER_FMC_UUID)
    assert not is_internal_ca_of(CertFacts.from_pem(vectors.foreign_ca.pem), FMC_UUID)
    assert not is_internal_ca_of(CertFacts.from_pem(vectors.device.pem), FMC_UUID)


def test_a_v1_cert_named_like_its_issuer_but_signed_by_another_key_is_not_a_ca(vectors: Vectors) -> None:
    impostor = CertFacts.from_pem(vectors.impostor_pem)

    assert (impostor.version, impostor.subject_text, impostor.issuer_text) == (1, CA_SUBJECT, CA_SUBJECT)
    assert not impostor.is_ca
    assert not is_internal_ca_of(impostor, FMC_UUID)
    assert issued_by(vectors.impostor_pem, vectors.twin_ca.pem)
    assert not issued_by(vectors.impostor_pem, vectors.impostor_pem)


def test_sftunnel_cert_of_its_owner_only(vectors: Vectors) -> None:
    device = CertFacts.from_pem(vectors.device.pem)

    assert is_sftunnel_cert_of(device, FTD_UUID)
    assert is_sftunnel_cert_of(device, FTD_UUID.upper())
    assert not is_sftunnel_cert_of(device, FMC_UUID)
    assert not is_sftunnel_cert_of(CertFacts.from_pem(vectors.ca.pem), FMC_UUID)


def test_facts_are_values(vectors: Vectors) -> None:
    first, second = CertFacts.from_pem(vectors.ca.pem), CertFacts.from_pem(vectors.ca.pem)

    assert first == second
    assert hash(first) == hash(second)
    assert first != CertFacts.from_pem(vectors.twin_ca.pem)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.serial = 1  # type: ignore[misc]  # the misuse under test
    with pytest.raises(TypeError):
        first.subject["CN"] = "x"  # type: ignore[index]  # a read-only mapping


# ---------------------------------------------------------------- v3 vectors from the lab


def test_lab_v3_ca_and_the_cisco_expiry_sample(lab_vectors: LabVectors) -> None:
    ca = CertFacts.from_pem(lab_vectors.ca_pem)

    assert (ca.version, ca.serial, ca.is_ca) == (3, 1, True)
    assert ca.subject_text == CA_SUBJECT
    assert ca.sha256 == hashlib.sha256(x509.load_pem_x509_certificate(lab_vectors.ca_pem).public_bytes(
        serialization.Encoding.DER)).hexdigest()  # fmt: skip
    assert ca.not_after_utc == datetime(2034, 10, 9, 10, 12, 50, tzinfo=UTC)
    assert ca.days_left(CISCO_NOW) == 3646  # "Current ca_root expires in 3646 days" (device-facts 3.2)
    assert is_internal_ca_of(ca, FMC_UUID)


def test_lab_expired_ca(lab_vectors: LabVectors) -> None:
    expired = CertFacts.from_pem(lab_vectors.expired_ca_pem)

    assert expired.not_after_utc == datetime(2024, 10, 8, 10, 12, 50, tzinfo=UTC)
    assert expired.days_left(CISCO_NOW) == -7
    assert not expired.valid_at(CISCO_NOW)
    assert is_internal_ca_of(expired, FMC_UUID)  # expired is still the FMC's CA; expiry is days_left's job


def test_lab_v3_device_cert(lab_vectors: LabVectors, vectors: Vectors) -> None:
    device = CertFacts.from_pem(lab_vectors.device_pem)

    assert (device.version, device.serial, device.is_ca) == (3, 7, False)
    assert device.subject_text == DEVICE_SUBJECT
    assert is_sftunnel_cert_of(device, FTD_UUID)
    assert issued_by(lab_vectors.device_pem, lab_vectors.ca_pem)
    assert not issued_by(lab_vectors.device_pem, lab_vectors.expired_ca_pem)  # same subject, other key
    assert not issued_by(lab_vectors.device_pem, vectors.ca.pem)
    assert not issued_by(vectors.device.pem, lab_vectors.ca_pem)
    pkcs1 = KeyFacts.from_pem(pki.key_pem(lab_vectors.device_key))
    pkcs8 = KeyFacts.from_pem(_pkcs8(lab_vectors.device_key))
    assert (pkcs1.pem_format, pkcs8.pem_format) == ("pkcs1", "pkcs8")
    assert key_matches(device, pkcs1)
    assert key_matches(device, pkcs8)
    assert not key_matches(device, KeyFacts.from_pem(pki.key_pem(lab_vectors.ca_key)))


def test_a_key_works_with_its_certificate_only_when_it_signs_what_the_certificate_verifies(
    lab_vectors: LabVectors, vectors: Vectors
) -> None:
    device_key = lab_vectors.device_key
    assert key_works_with(lab_vectors.device_pem, pki.key_pem(device_key))  # PKCS#1
    assert key_works_with(lab_vectors.device_pem, _pkcs8(device_key))
    assert not key_works_with(lab_vectors.device_pem, pki.key_pem(lab_vectors.ca_key))  # another key
    assert not key_works_with(lab_vectors.device_pem, _pkcs8(ec.generate_private_key(ec.SECP256R1())))
    # Loading skips OpenSSL's consistency check of the private parts; the signature still catches a key
    # whose public half matches and whose private parts are wrong (as a disk or a copy could leave it).
    numbers = device_key.private_numbers()
    broken = rsa.RSAPrivateNumbers(
        p=numbers.p,
        q=numbers.q,
        d=numbers.d + 2,
        dmp1=numbers.dmp1 + 2,
        dmq1=numbers.dmq1 + 2,
        iqmp=numbers.iqmp,
        public_numbers=numbers.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    assert broken.public_key().public_numbers() == device_key.public_key().public_numbers()
    assert not key_works_with(lab_vectors.device_pem, pki.key_pem(broken))
    with pytest.raises(CertificateError) as refused:
        key_works_with(
            lab_vectors.device_pem, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
        )
    assert "not a key" not in str(refused.value)


def test_a_v3_certificate_without_basic_constraints_is_not_a_ca(lab_vectors: LabVectors) -> None:
    """OpenSSL refuses such a CA ("invalid CA certificate"); so must we, even with the InternalCA subject."""
    name = pki.ca_name(FMC_UUID)
    start = datetime(2024, 10, 11, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(lab_vectors.ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(lab_vectors.ca_key, hashes.SHA256())
    )
    facts = CertFacts.from_certificate(cert)

    assert facts.version == 3
    assert facts.self_issued
    assert not facts.is_ca
    assert not is_internal_ca_of(facts, FMC_UUID)


def test_an_extra_subject_attribute_is_not_the_internal_ca(lab_vectors: LabVectors) -> None:
    name = x509.Name([*pki.ca_name(FMC_UUID), x509.NameAttribute(NameOID.COUNTRY_NAME, "US")])
    start = datetime(2024, 10, 11, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(lab_vectors.ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(lab_vectors.ca_key, hashes.SHA256())
    )
    facts = CertFacts.from_certificate(cert)

    assert facts.subject_text == CA_SUBJECT + "/C=US"
    assert facts.is_ca
    assert not is_internal_ca_of(facts, FMC_UUID)


def test_an_ec_key_in_pkcs8_is_read_and_its_kind_named() -> None:
    key = KeyFacts.from_pem(_pkcs8(ec.generate_private_key(ec.SECP256R1())))
    assert (key.kind, key.pem_format) == ("EC-secp256r1", "pkcs8")


# ---------------------------------------------------------------- malformed input


def _corrupt(pem: bytes) -> bytes:
    """The same PEM with a damaged body (the armour intact), so only the DER decoding can fail."""
    lines = pem.decode().splitlines()
    lines[3] = lines[3][::-1]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "found 0"),
        (b"hello, not a certificate\n", "found 0"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "could not be decoded"),
    ],
)
def test_malformed_certificates_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        CertFacts.from_pem(data)


def test_a_damaged_certificate_is_refused_without_echo(vectors: Vectors) -> None:
    damaged = _corrupt(vectors.device.pem)
    with pytest.raises(CertificateError, match="expected a PEM certificate") as caught:
        CertFacts.from_pem(damaged)
    _assert_not_echoed(caught.value, damaged)


def test_a_private_key_given_as_a_certificate_is_not_echoed(vectors: Vectors) -> None:
    for call in (
        lambda: CertFacts.from_pem(vectors.device.key_pkcs1),
        lambda: issued_by(vectors.device.key_pkcs8, vectors.ca.pem),
    ):
        with pytest.raises(CertificateError, match="expected one PEM") as caught:
            call()
        _assert_not_echoed(caught.value, vectors.device.key_pkcs1 + vectors.device.key_pkcs8)


def test_a_bundle_is_not_one_certificate(vectors: Vectors) -> None:
    with pytest.raises(CertificateError, match="found 2"):
        CertFacts.from_pem(vectors.ca.pem + vectors.device.pem)
    with pytest.raises(CertificateError, match="CA certificate"):
        issued_by(vectors.device.pem, vectors.ca.pem + vectors.twin_ca.pem)


def test_text_instead_of_bytes_is_a_type_error(vectors: Vectors) -> None:
    with pytest.raises(TypeError, match="PEM bytes"):
        CertFacts.from_pem(vectors.ca.pem.decode())  # type: ignore[arg-type]  # the misuse under test
    with pytest.raises(TypeError, match="PEM bytes"):
        KeyFacts.from_pem(vectors.device.key_pkcs1.decode())  # type: ignore[arg-type]


def test_malformed_keys_are_refused_without_echo(vectors: Vectors) -> None:
    damaged = _corrupt(vectors.device.key_pkcs1)
    with pytest.raises(CertificateError, match="could not be read") as caught:
        KeyFacts.from_pem(damaged)
    _assert_not_echoed(caught.value, damaged)
    with pytest.raises(CertificateError, match="found 0 PEM blocks"):
        KeyFacts.from_pem(b"")
    with pytest.raises(CertificateError, match="found 2 PEM blocks") as caught:
        KeyFacts.from_pem(vectors.device.key_pkcs1 + vectors.ca.key_pkcs1)
    _assert_not_echoed(caught.value, vectors.device.key_pkcs1)
    with pytest.raises(CertificateError, match="another kind"):
        KeyFacts.from_pem(vectors.device.pem)


def test_encrypted_and_sec1_keys_are_refused(lab_vectors: LabVectors) -> None:
    encrypted = lab_vectors.device_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"throw-away"),
    )
    with pytest.raises(CertificateError, match="encrypted") as caught:
        KeyFacts.from_pem(encrypted)
    _assert_not_echoed(caught.value, encrypted)
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertificateError, match="another kind"):
        KeyFacts.from_pem(sec1)


def test_fingerprint_text_refuses_what_is_not_hex() -> None:
    assert fingerprint_text("00ff1a") == "00:FF:1A"
    with pytest.raises(ValueError, match="hex digest"):
        fingerprint_text("not-hex")

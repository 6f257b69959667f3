"""The evidence pack (pure): built from a record, sealed, checked; any changed byte fails; no secret in it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.certs import CertFacts
from pipeline.evidence import (
    SCHEMA_VERSION,
    EvidencePack,
    Failure,
    RenewalRecord,
    build_pack,
    check,
    render,
    seal,
)
from pipeline.store import (
    Artifact,
    PeerHeld,
    PushRestart,
    PushSlot,
    Renewal,
    RenewalEvent,
    RenewalFmc,
    StepRun,
    new_artifact_key,
)
from pipeline.store.crypto import artifact_key

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
FMC_UUID = "3f2a6c1e-0d4b-11ef-9c3a-8f1e2d3c4b5a"
FTD_UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#: A stand-in for what must never reach a pack: a private key's PEM (what a sealed artifact holds, opened).
KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN-not-a-real-key\n-----END PRIVATE KEY-----\n"
VALIDATE = json.dumps(
    {
        "fmc_uuid": FMC_UUID,
        "ca_days_left": 9,
        "peers": [
            {
                "name": "ftd-001",
                "host": "10.0.1.1",
                "uuid": FTD_UUID,
                "tunnel": "down",
                "routes": ["direct", "via jump-1"],
                "action": "PUSH",
            },
            {
                "name": "ftd-002",
                "host": "10.0.1.2",
                "uuid": None,
                "tunnel": "down",
                "routes": [],
                "action": "STRANDED",
                "refusal": {"kind": "AuthenticationFailed", "route": "direct", "detail": "login refused"},
            },
        ],
    }
).encode()


def _ca(name: str, start: datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Intrusion Management System"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(2**150 + 7)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


OLD_CA = _ca("InternalCA old", T0 - timedelta(days=3641))
NEW_CA = _ca("InternalCA new", T0)


def _artifact(
    kind: str, path: str, data: bytes, *, device: str | None = None, secret: bool = False
) -> Artifact:
    return Artifact(
        renewal_id="r1",
        fmc="fmc-a",
        device=device,
        kind=kind,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        secret=secret,
        data=data,
        created_at_utc=T0,
    )


def _run(step: str, state: str, device: str | None = None, attempt: int = 1, **more: str) -> StepRun:
    return StepRun(
        renewal_id="r1",
        fmc="fmc-a",
        device=device,
        step=step,
        attempt=attempt,
        state=state,
        started_at_utc=T0 + timedelta(minutes=attempt),
        finished_at_utc=T0 + timedelta(minutes=attempt, seconds=30),
        route=more.get("route"),
        error_kind=more.get("error_kind"),
        message=more.get("message"),
        who=more.get("who"),
    )


def record() -> RenewalRecord:
    peers = "/var/sf/peers/" + FTD_UUID + "/certs_pushed/"
    return RenewalRecord(
        renewal=Renewal(
            id="r1",
            pair="dc1",
            requested_by="alice",
            requested_at_utc=T0,
            state="partial",
            finished_at_utc=T0 + timedelta(hours=1),
            last_progress_utc=T0,
        ),
        fmcs=[
            RenewalFmc(
                renewal_id="r1",
                fmc="fmc-a",
                role="primary",
                state="partial",
                fmc_uuid=FMC_UUID,
                ca_before_sha256=CertFacts.from_pem(OLD_CA).sha256,
                ca_after_sha256=CertFacts.from_pem(NEW_CA).sha256,
                regen_claimed_at_utc=T0,
                regen_intent_at_utc=T0,
                regen_done_at_utc=T0 + timedelta(minutes=5),
            )
        ],
        steps=[
            *(_run(name, "succeeded") for name in ("backup", "validate", "regenerate", "verify")),
            _run("push", "retrying", "ftd-001", route="direct", error_kind="DeviceUnreachableError"),
            _run("push", "succeeded", "ftd-001", attempt=2, route="via jump-1"),
            _run("push", "refused", "ftd-002", route="direct", error_kind="AuthenticationFailedError"),
            _run("verify", "succeeded", "ftd-001", message="connected; files checked direct"),
            _run("verify", "failed", "ftd-002", error_kind="Unreachable", message="not logged in"),
        ],
        events=[
            RenewalEvent(renewal_id="r1", at_utc=T0, action="enqueue", who="alice", detail="pair dc1"),
            RenewalEvent(
                renewal_id="r1",
                at_utc=T0,
                action="accept-stranded",
                who="alice",
                device="ftd-002",
                detail="x",
            ),
            # An action this code does not know yet is carried all the same.
            RenewalEvent(renewal_id="r1", at_utc=T0, action="restore", who="bob", fmc="fmc-a"),
        ],
        artifacts=[
            _artifact("backup", "/etc/sf/ca_root/cacert.pem", OLD_CA),
            _artifact("backup", "/etc/sf/ca_root/cakey.pem", KEY_PEM, secret=True),
            _artifact("validate", "validate.json", VALIDATE),
            _artifact("new_ca", "/etc/sf/ca_root/cacert.pem", NEW_CA),
            _artifact("peer_material", peers + "sftunnel-cert.pem", NEW_CA, device="ftd-001"),
            _artifact("peer_material", peers + "sftunnel-key.pem", KEY_PEM, device="ftd-001", secret=True),
        ],
        restarts=[
            PushRestart(
                renewal_id="r1",
                fmc="fmc-a",
                device="ftd-001",
                write_started_at_utc=T0 + timedelta(minutes=2),
                restarted_at_utc=T0 + timedelta(minutes=3),
            )
        ],
        held=[
            PeerHeld(
                renewal_id="r1",
                fmc="fmc-a",
                device="ftd-001",
                ca_sha256=CertFacts.from_pem(NEW_CA).sha256,
                cert_sha256="ab" * 32,
                key_matches_cert=True,
                route="via jump-1",
                checked_at_utc=T0 + timedelta(minutes=3),
            )
        ],
        slots=[
            PushSlot(renewal_id="r1", fmc="fmc-a", round=1, device=d, settled_at_utc=T0, outcome=o)
            for d, o in (("ftd-001", "succeeded"), ("ftd-002", "failed"))
        ],
    )


#: The artifact key as configured (SFTRENEW_ARTIFACT_KEY), and raw.
KEY_SETTING = new_artifact_key()
KEY = artifact_key(KEY_SETTING)


def pack() -> EvidencePack:
    return build_pack(record(), generated_at_utc=T0 + timedelta(hours=2), generator="sftrenew test")


def test_the_pack_holds_the_record() -> None:
    built = pack()
    (fmc,) = built.fmcs
    assert (built.renewal.pair, fmc.name, fmc.role, fmc.uuid) == ("dc1", "fmc-a", "primary", FMC_UUID)
    old, new = CertFacts.from_pem(OLD_CA), CertFacts.from_pem(NEW_CA)
    assert fmc.ca_before is not None and fmc.ca_after is not None
    assert (fmc.ca_before.sha256, fmc.ca_before.serial) == (old.sha256, str(2**150 + 7))
    assert fmc.ca_before.subject == old.subject_text and fmc.ca_before.not_after_utc == old.not_after_utc
    assert fmc.ca_after.sha256 == new.sha256 and fmc.notes == ()
    assert [(f.path, f.sealed) for f in fmc.backup] == [
        ("/etc/sf/ca_root/cacert.pem", False),
        ("/etc/sf/ca_root/cakey.pem", True),
    ]
    assert fmc.backup[1].sha256 == hashlib.sha256(KEY_PEM).hexdigest()
    assert fmc.validation_before is not None
    refused = fmc.validation_before.peers[1]
    assert refused.action.startswith("stranded") and refused.refusal is not None
    assert fmc.plan_at_enqueue is None
    assert [(p.name, p.verdict) for p in fmc.validation_after] == [
        ("ftd-001", "verified"),
        ("ftd-002", "Unreachable"),
    ]
    one, two = fmc.devices
    assert [(a.step, a.attempt, a.state, a.route) for a in one.attempts] == [
        ("push", 1, "retrying", "direct"),
        ("verify", 1, "succeeded", None),
        ("push", 2, "succeeded", "via jump-1"),
    ]
    assert (one.push, one.route, one.verdict) == ("succeeded", "via jump-1", "verified")
    assert [f.name for f in one.files] == ["cacert.pem", "sftunnel-cert.pem", "sftunnel-key.pem"]
    assert one.files[2].sealed and one.folder == f"/var/sf/peers/{FMC_UUID}"
    assert one.restarted_at_utc == T0 + timedelta(minutes=3) and one.held is not None
    assert (two.push, two.verdict, two.write_started_at_utc, two.files) == (
        "refused",
        "Unreachable",
        None,
        (),
    )
    assert [(e.action, e.who) for e in built.events] == [
        ("enqueue", "alice"),
        ("accept-stranded", "alice"),
        ("restore", "bob"),
    ]


def test_a_sealed_pack_round_trips_and_is_intact() -> None:
    sealed = seal(pack(), artifact_key=KEY)
    report = check(sealed.data, artifact_key=KEY)
    assert report.intact, report.message
    value = json.loads(sealed.data)
    assert value["version"] == SCHEMA_VERSION and value["sha256"] == sealed.sha256
    assert EvidencePack.model_validate(value["content"]) == pack()
    assert seal(pack(), artifact_key=KEY).data == sealed.data  # deterministic


def test_every_single_changed_byte_fails_the_check() -> None:
    data = seal(pack(), artifact_key=KEY).data
    passed = []
    for index in range(len(data)):
        changed = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
        if check(changed, artifact_key=KEY).intact:
            passed.append(index)
    assert passed == []
    assert not check(data + b" ", artifact_key=KEY).intact
    assert not check(data[:-1], artifact_key=KEY).intact


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        (lambda v: v["content"]["renewal"].update(requested_by="mallory"), Failure.DIGEST_MISMATCH),
        (lambda v: v.update(version=2), Failure.UNKNOWN_VERSION),
        (lambda v: v.update(format="something else"), Failure.NOT_A_PACK),
        (lambda v: v.update(extra=1), Failure.NOT_A_PACK),
        (lambda v: v["hmac"].update(value="00" * 32), Failure.HMAC_MISMATCH),
    ],
)
def test_each_check_names_what_failed(change: object, failure: Failure) -> None:
    value = json.loads(seal(pack(), artifact_key=KEY).data)
    change(value)  # type: ignore[operator]
    data = (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    assert check(data, artifact_key=KEY).failure is failure


def test_a_recomputed_digest_does_not_fool_the_hmac() -> None:
    value = json.loads(seal(pack(), artifact_key=KEY).data)
    value["content"]["renewal"]["requested_by"] = "mallory"
    body = {k: value[k] for k in ("format", "version", "content")}
    value["sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    data = (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    report = check(data, artifact_key=KEY)
    assert report.failure is Failure.HMAC_MISMATCH and "was changed" in report.message


def test_a_reformatted_pack_is_not_intact() -> None:
    value = json.loads(seal(pack(), artifact_key=KEY).data)
    report = check(json.dumps(value).encode(), artifact_key=KEY)
    assert report.failure is Failure.LAYOUT_CHANGED


def test_another_key_fails_and_says_so() -> None:
    other = artifact_key(new_artifact_key())
    report = check(seal(pack(), artifact_key=KEY).data, artifact_key=other)
    assert report.failure is Failure.HMAC_MISMATCH and "another key" in report.message


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b"{}", b'{"format": NaN}', b"not json"])
def test_what_is_no_pack_says_so(data: bytes) -> None:
    assert check(data, artifact_key=KEY).failure is Failure.NOT_A_PACK


@pytest.mark.parametrize("fmt", ["json", "html", "md"])
def test_no_secret_in_any_form(fmt: str) -> None:
    sealed = seal(pack(), artifact_key=KEY)
    text = sealed.data.decode() if fmt == "json" else render(pack(), fmt, sealed=sealed)  # type: ignore[arg-type]
    assert "PRIVATE KEY" not in text and "not-a-real-key" not in text
    assert KEY_SETTING not in text and KEY.hex() not in text


def test_the_html_is_self_contained_and_escaped() -> None:
    built = pack().model_copy(
        update={"generator": "<script>alert(1)</script>"},
    )
    html = render(built, "html", sealed=seal(built, artifact_key=KEY))
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html and "@import" not in html
    assert "@media print" in html and "break-before: page" in html
    for name in ("dc1", "fmc-a", "ftd-001", "ftd-002", "accept-stranded", "restore"):
        assert name in html


def test_the_markdown_tables_stay_tables() -> None:
    rec = record()
    rec.events[0].detail = "a | b\nc"
    built = build_pack(rec, generated_at_utc=T0, generator="sftrenew test")
    md = render(built, "md", sealed=seal(built, artifact_key=KEY))
    assert "a \\| b c" in md
    assert "| ftd-001 | succeeded | via jump-1 | 2 |" in md

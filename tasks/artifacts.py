"""What the tasks store and read back between steps: the backup, validate's facts, the new material, each
push's write and restart, verdicts.

A push runs in another task, maybe on another machine, long after the regeneration: it finds everything it
needs here, in the database (keys sealed), never in a task argument. This module is the tasks' adapter to
`pipeline.store`: step outcomes in, the inputs of later steps out.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from pydantic import SecretStr, ValidationError
from sqlmodel import Session

from pipeline import flow, store
from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT, PEER_CERT, PEER_KEY, certs_pushed
from pipeline.devices.session import Route
from pipeline.errors import BadRecordError, NoMaterialError, UnknownPeerError
from pipeline.inventory import FmcPair
from pipeline.material import DeviceFile, FilesBefore, PeerMaterial
from pipeline.plan import FmcPlan, plan_fmc
from pipeline.records import PeerRecord, RefusalRecord, ValidateRecord
from pipeline.steps.backup import BackupOutcome
from pipeline.steps.push import HeldFiles, RestartFacts
from pipeline.steps.regenerate import RegenOutcome
from pipeline.steps.validate import PeerProbe, RouteProbe, ValidateOutcome
from pipeline.steps.verify import Expected, Recorded, Verdict, VerifyOutcome
from pipeline.store import RenewalFmc
from tasks import record
from tasks.context import Context

VALIDATE_PATH = "validate.json"
PLAN_PATH = "plan.json"
#: How many of a stored document's problems a BadRecordError names (the first ones say enough).
PROBLEMS_SHOWN = 3


def fmc_row(ctx: Context, renewal_id: str, fmc: str) -> RenewalFmc:
    with ctx.db() as db:
        return store.renewal_fmc(session=db, renewal_id=renewal_id, fmc=fmc)


def data(
    ctx: Context, renewal_id: str, fmc: str, *, kind: str, path: str, device: str | None = None
) -> bytes:
    with ctx.db() as db:
        return stored(db, ctx.settings.artifact_key, renewal_id, fmc, kind=kind, path=path, device=device)


def stored(
    db: Session,
    key: SecretStr | None,
    renewal_id: str,
    fmc: str,
    *,
    kind: str,
    path: str,
    device: str | None = None,
) -> bytes:
    """The newest artifact of that kind and path, unsealed, read in the caller's transaction."""
    return store.artifact_data(_newest(db, renewal_id, fmc, kind=kind, path=path, device=device), key=key)


def _newest(
    db: Session, renewal_id: str, fmc: str, *, kind: str, path: str, device: str | None = None
) -> store.Artifact:
    """The newest artifact of that kind and path; LookupError naming it when there is none."""
    rows = store.artifacts_of(session=db, renewal_id=renewal_id, fmc=fmc, kind=kind, device=device)
    return _newest_of(rows, path, renewal_id, device or fmc, kind)


def _newest_of(
    rows: list[store.Artifact], path: str, renewal_id: str, owner: str, kind: str
) -> store.Artifact:
    """The newest of `rows` (in the order kept) with that path; LookupError naming it when there is none."""
    found = [r for r in rows if r.path == path]
    if not found:
        raise LookupError(f"renewal {renewal_id}: no {kind} artifact {path} for {owner}")
    return found[-1]


def save_backup(ctx: Context, renewal_id: str, outcome: BackupOutcome) -> None:
    with ctx.db() as db:
        store.set_fmc_state(
            session=db, renewal_id=renewal_id, fmc=outcome.fmc, state="running", now=ctx.now()
        )
        for item in outcome.files:
            store.add_device_file(
                session=db,
                renewal_id=renewal_id,
                fmc=outcome.fmc,
                device=None,
                kind="backup",
                file=item,
                key=ctx.settings.artifact_key,
                now=ctx.now(),
            )
        store.record_ca_before(
            session=db,
            renewal_id=renewal_id,
            fmc=outcome.fmc,
            ca_sha256=outcome.ca_sha256,
            fmc_uuid=outcome.fmc_uuid,
            now=ctx.now(),
        )


def save_validate(ctx: Context, renewal_id: str, facts: ValidateOutcome) -> FmcPlan:
    """Store validate's facts and the plan made from them (a `ValidateRecord`); return the plan."""
    with ctx.db() as db:
        return _save_record(db, renewal_id, facts, kind="validate", path=VALIDATE_PATH, now=ctx.now())


def save_plan(db: Session, renewal_id: str, facts: ValidateOutcome, *, now: datetime) -> None:
    """Keep the plan the gate at enqueue made for one FMC (what the operator saw when it started), as a
    `ValidateRecord` of kind `plan`."""
    _save_record(db, renewal_id, facts, kind="plan", path=PLAN_PATH, now=now)


def _save_record(
    db: Session, renewal_id: str, facts: ValidateOutcome, *, kind: str, path: str, now: datetime
) -> FmcPlan:
    """Facts of a validate (the step's, or the gate's at enqueue) and their plan, as one `ValidateRecord`."""
    plan = plan_fmc(facts)
    store.add_artifact(
        session=db,
        renewal_id=renewal_id,
        fmc=facts.fmc,
        device=None,
        kind=kind,
        path=path,
        data=ValidateRecord.of(facts, plan).model_dump_json(indent=1).encode(),
        secret=False,
        key=None,
        now=now,
    )
    return plan


def plan_record(ctx: Context, renewal_id: str, fmc: str) -> ValidateRecord | None:
    """The plan the gate at enqueue made for the FMC (None: none kept, a renewal from before the gate)."""
    try:
        raw = data(ctx, renewal_id, fmc, kind="plan", path=PLAN_PATH)
    except LookupError:
        return None
    return read_validate_record(raw, renewal_id=renewal_id, fmc=fmc)


def planned_peers(db: Session, renewal_id: str) -> dict[str, int]:
    """Per FMC, how many peers the plan at enqueue found (what a progress bar's total is from the start);
    empty for a renewal from before the gate."""
    found = {}
    for artifact in store.artifacts_of(session=db, renewal_id=renewal_id, kind="plan"):
        if artifact.fmc is not None:
            record = read_validate_record(artifact.data, renewal_id=renewal_id, fmc=artifact.fmc)
            found[artifact.fmc] = len(record.peers)
    return found


def known_at_plan(ctx: Context, renewal_id: str, fmc: str) -> dict[str, PeerProbe]:
    """What the gate at enqueue found of the FMC's peers that validate takes as it is, without logging in:
    every login a peer refused (each refused login counts towards the device's lockout), and, while the plan
    is younger than `plan_fresh_for`, every working route with the UUID the device reported. A failed probe
    is not taken: validate tries that device again. Empty when there is no plan record."""
    with ctx.db() as db:
        try:
            artifact = _newest(db, renewal_id, fmc, kind="plan", path=PLAN_PATH)
        except LookupError:
            return {}
        raw = store.artifact_data(artifact, key=ctx.settings.artifact_key)
        age = (ctx.now() - artifact.created_at_utc).total_seconds()
    planned = read_validate_record(raw, renewal_id=renewal_id, fmc=fmc)
    fresh = 0 <= age <= ctx.settings.plan_fresh_for
    known = {}
    for p in planned.peers:
        if p.refusal is not None:
            refused = RouteProbe(
                Route.parse(p.refusal.route),
                ok=False,
                error_kind=p.refusal.kind,
                detail=f"{p.refusal.detail} (refused when the renewal was planned)",
            )
            known[p.name] = PeerProbe((refused,), None, from_plan=True)
        elif fresh and p.routes:
            working = tuple(RouteProbe(Route.parse(route), ok=True) for route in p.routes)
            known[p.name] = PeerProbe(working, p.uuid, from_plan=True)
    return known


def awaiting_approval(ctx: Context, renewal_id: str) -> bool:
    """Held at enqueue and not approved yet: no regeneration may start."""
    with ctx.db() as db:
        return store.awaiting_approval(session=db, renewal_id=renewal_id)


def pair_name(ctx: Context, renewal_id: str) -> str:
    """The name of the pair the renewal renews (what a notice names)."""
    with ctx.db() as db:
        row = store.renewal(session=db, renewal_id=renewal_id)
    return row.pair if row is not None else "?"


def paused(ctx: Context, renewal_id: str) -> bool:
    """Paused by someone (`sftrenew pause`) and not resumed: no push starts, verify waits."""
    with ctx.db() as db:
        return store.paused(session=db, renewal_id=renewal_id)


def accepted_stranded(ctx: Context, renewal_id: str) -> frozenset[str]:
    """The devices someone accepted losing when the renewal was enqueued (`--accept-stranded`)."""
    with ctx.db() as db:
        events = store.events_of(session=db, renewal_id=renewal_id, action="accept-stranded")
    return frozenset(e.device for e in events if e.device)


def validate_record(ctx: Context, renewal_id: str, fmc: str) -> ValidateRecord:
    """Validate's facts for `fmc`, as stored; BadRecordError when the document does not read back as one."""
    with ctx.db() as db:
        return validated_in(db, ctx.settings.artifact_key, renewal_id, fmc)


def read_validate_record(raw: bytes, *, renewal_id: str, fmc: str) -> ValidateRecord:
    """Parse a stored validate document; the error names the renewal, FMC, artifact and the wrong fields
    (never their values)."""
    try:
        return _parsed_validate(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        shown = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'document'}: {e['msg']}"
            for e in problems[:PROBLEMS_SHOWN]
        )
        more = f"; and {len(problems) - PROBLEMS_SHOWN} more" if len(problems) > PROBLEMS_SHOWN else ""
        raise BadRecordError(renewal_id, fmc, f"validate artifact {VALIDATE_PATH}", shown + more) from None


@functools.lru_cache(maxsize=8)
def _parsed_validate(raw: bytes) -> ValidateRecord:
    """Parsed once per content: every push of a 300-peer FMC reads the same document, 2 ms of CPU a time.
    The record is frozen, so sharing it is safe; a document that does not parse is not cached and fails
    again."""
    return ValidateRecord.model_validate_json(raw)


def expected_peers(ctx: Context, renewal_id: str, fmc: str) -> tuple[list[Expected], str]:
    """The peers verify checks, each with why it must not log in to it (`pipeline.flow.login_refused`: it
    refused validate's login in round 1, or its push in the FMC's newest round was refused)."""
    record = validate_record(ctx, renewal_id, fmc)
    with ctx.db() as db:
        round_ = store.push_round(session=db, renewal_id=renewal_id, fmc=fmc)
        gave_up = store.failed_pushes(session=db, renewal_id=renewal_id, fmc=fmc)
        recorded = _recorded(db, renewal_id, fmc, record)
    refused_push = {r.device: r.error_kind for r in gave_up if r.state == "refused"}
    expected = []
    for p in record.peers:
        decided = flow.login_refused(
            "verify",
            round_,
            at_validate=p.refusal.kind if p.refusal is not None else None,
            push_this_round=refused_push.get(p.name),
        )
        expected.append(Expected(p.name, p.host, p.uuid, _not_logged_in(decided, p), recorded.get(p.name)))
    return expected, record.fmc_uuid


def _recorded(db: Session, renewal_id: str, fmc: str, record: ValidateRecord) -> dict[str, Recorded]:
    """What each peer's latest successful push found it holding, with the certificate this renewal made for
    it (stored in the clear: a certificate is no secret), for verify to judge without logging in."""
    held = store.held_by_device(session=db, renewal_id=renewal_id, fmc=fmc)
    certs = {
        (a.device, a.path): a.data
        for a in store.artifacts_of(session=db, renewal_id=renewal_id, fmc=fmc, kind="peer_material")
        if not a.secret
    }
    recorded: dict[str, Recorded] = {}
    for peer in record.peers:
        row = held.get(peer.name)
        cert = certs.get((peer.name, certs_pushed(peer.uuid, PEER_CERT))) if peer.uuid else None
        if row is None or cert is None:
            continue
        files = HeldFiles(row.ca_sha256, row.cert_sha256, row.key_matches_cert)
        recorded[peer.name] = Recorded(files, cert, row.route)
    return recorded


def _not_logged_in(decided: flow.Refused | None, peer: PeerRecord) -> str | None:
    if decided is None:
        return None
    if decided.at == "validate" and peer.refusal is not None:
        why = f"{peer.refusal.detail} (refused at validate)"
    else:
        why = f"its push this round was refused ({decided.kind})"
    return f"not logged in: {why}; fix it, then `sftrenew retry`"


def validated_in(db: Session, key: SecretStr | None, renewal_id: str, fmc: str) -> ValidateRecord:
    """Validate's facts for `fmc`, read in the caller's transaction (`validate_record` opens one);
    LookupError when there are none, BadRecordError when the document does not read back as one."""
    raw = stored(db, key, renewal_id, fmc, kind="validate", path=VALIDATE_PATH)
    return read_validate_record(raw, renewal_id=renewal_id, fmc=fmc)


def validate_refusal(validated: ValidateRecord, device: str) -> RefusalRecord | None:
    """The login `device` refused at validate; None when it refused none."""
    peer = validated.peer(device)
    return peer.refusal if peer is not None else None


def claim(ctx: Context, renewal_id: str, fmc: str, *, token: str) -> bool:
    """Whether this task holds the regeneration claim (first claim, a retry or redelivery of the claiming
    task, or a take-over from a holder that must be dead, whose attempts still `started` are then closed as
    interrupted); False while a live task holds it, or once the regeneration is done and another task made
    it."""
    now = ctx.now()
    with ctx.db() as db:
        held = store.claim_regeneration(session=db, renewal_id=renewal_id, fmc=fmc, token=token, now=now)
        if not held:
            stale = now - timedelta(seconds=ctx.settings.celery.task_time_limit)
            held = store.take_over_regeneration(
                session=db, renewal_id=renewal_id, fmc=fmc, token=token, stale_before=stale, now=now
            )
            if held:
                lost = store.interrupt_started(
                    session=db,
                    renewal_id=renewal_id,
                    fmc=fmc,
                    steps=("regenerate",),
                    other_than=token,
                    now=now,
                )
                record.mark_lost(lost, taker=token)
    return held


def record_intent(ctx: Context, renewal_id: str, fmc: str, *, token: str) -> bool:
    """Record (committed) that this task, holding the claim, is about to run generate_certs.pl; False when it
    no longer holds the claim (then it must not run it)."""
    with ctx.db() as db:
        return store.record_regeneration_intent(
            session=db, renewal_id=renewal_id, fmc=fmc, token=token, now=ctx.now()
        )


def save_regeneration(ctx: Context, renewal_id: str, pair: FmcPair, outcome: RegenOutcome) -> list[str]:
    """Store the new CA and every known peer's material (keys sealed), record the new CA, and open push
    round 1 for the FMC's peers. Returns the peers."""
    fmc, key, now = outcome.fmc, ctx.settings.artifact_key, ctx.now()
    validated = validate_record(ctx, renewal_id, fmc)
    by_uuid = validated.names_by_uuid()
    devices = [p.name for p in validated.peers]
    with ctx.db() as db:
        store.add_device_file(
            session=db,
            renewal_id=renewal_id,
            fmc=fmc,
            device=None,
            kind="new_ca",
            file=DeviceFile.of(CA_CERT, outcome.ca_pem),
            key=key,
            now=now,
        )
        for material in outcome.peers:
            device = by_uuid.get(material.peer_uuid)
            for name, pem in ((PEER_CERT, material.cert_pem), (PEER_KEY, material.key_pem)):
                store.add_device_file(
                    session=db,
                    renewal_id=renewal_id,
                    fmc=fmc,
                    device=device,
                    kind="peer_material",
                    file=DeviceFile.of(certs_pushed(material.peer_uuid, name), pem),
                    key=key,
                    now=now,
                )
        store.record_regeneration(
            session=db, renewal_id=renewal_id, fmc=fmc, ca_after_sha256=outcome.new_ca_sha256, now=now
        )
        store.open_push_round(session=db, renewal_id=renewal_id, fmc=fmc, round=1, devices=devices, now=now)
    return devices


def slot_outcome(db: Session, renewal_id: str, fmc: str, round_: int, device: str) -> str | None:
    """How this push slot settled (succeeded, skipped, failed), None while it is open: what a delivered
    push message does depends on it (`pipeline.flow.push_delivery`)."""
    found = store.slot(session=db, renewal_id=renewal_id, fmc=fmc, round=round_, device=device)
    return found.outcome if found is not None and found.settled_at_utc is not None else None


def material_for(
    db: Session, key: SecretStr | None, validated: ValidateRecord, renewal_id: str, fmc: str, device: str
) -> tuple[PeerMaterial, str]:
    """The files `device` must hold for `fmc` and the FMC's UUID, read in the caller's transaction (a push
    attempt reads all it needs in one; `validated` is validate's record, `validated_in`); UnknownPeerError
    when its UUID is unknown, NoMaterialError when the FMC made it no certificate."""
    peer = validated.peer(device)
    uuid = peer.uuid if peer is not None else None
    if not uuid:
        raise UnknownPeerError(device, "none")
    fmc_uuid = validated.fmc_uuid
    try:
        ca = stored(db, key, renewal_id, fmc, kind="new_ca", path=CA_CERT)
        rows = store.artifacts_of(
            session=db, renewal_id=renewal_id, fmc=fmc, kind="peer_material", device=device
        )  # one query for both files
        cert, peer_key = (
            store.artifact_data(
                _newest_of(rows, certs_pushed(uuid, name), renewal_id, device, "peer_material"), key=key
            )
            for name in (PEER_CERT, PEER_KEY)
        )
    except LookupError:
        raise NoMaterialError(device, "none") from None

    material = PeerMaterial(
        uuid, ca, cert, peer_key, CertFacts.from_pem(ca).sha256, CertFacts.from_pem(cert).sha256
    )
    return material, fmc_uuid


def restart_facts(db: Session, renewal_id: str, fmc: str, device: str) -> RestartFacts:
    """What the record says this renewal did to the device's files for `fmc`: the push decides from it."""
    row = store.push_restart(session=db, renewal_id=renewal_id, fmc=fmc, device=device)
    if row is None:
        return RestartFacts()
    return RestartFacts(row.write_started_at_utc, row.restarted_at_utc)


def write_started(ctx: Context, renewal_id: str, fmc: str, device: str, before: FilesBefore) -> None:
    """The push is about to change the device's files: recorded (committed) before the first one changes,
    in a transaction of its own (only the device's files say whether a push writes), with what the device
    held before (kept from the renewal's first write only)."""
    with ctx.db() as db:
        store.record_write_started(
            session=db, renewal_id=renewal_id, fmc=fmc, device=device, now=ctx.now(), before=before
        )


def save_verdicts(ctx: Context, renewal_id: str, fmc: str, outcome: VerifyOutcome) -> None:
    """One verify step run per device, so `sftrenew status` shows each device's verdict."""
    with ctx.db() as db:
        for item in outcome.devices:
            run = store.step_started(
                session=db, renewal_id=renewal_id, fmc=fmc, step="verify", device=item.name, now=ctx.now()
            )
            ok = item.verdict is Verdict.VERIFIED
            store.step_finished(
                session=db,
                step_run_id=run.id or 0,
                state="succeeded" if ok else "failed",
                error_kind=None if ok else item.verdict.name.title().replace("_", ""),
                message=item.detail,
                now=ctx.now(),
            )

"""What the tasks store and read back between steps: the backup, validate's facts, the new material, each
push's write and restart, verdicts.

A push runs in another task, maybe on another machine, long after the regeneration: it finds everything it
needs here, in the database (keys sealed), never in a task argument. This module is the tasks' adapter to
`pipeline.store`: step outcomes in, the inputs of later steps out.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from pipeline import store
from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT, PEER_CERT, PEER_KEY, certs_pushed
from pipeline.errors import DeviceError
from pipeline.inventory import FmcPair
from pipeline.material import DeviceFile, PeerMaterial
from pipeline.plan import FmcPlan, plan_fmc
from pipeline.steps.backup import BackupOutcome
from pipeline.steps.push import RestartFacts
from pipeline.steps.regenerate import RegenOutcome
from pipeline.steps.validate import ValidateOutcome
from pipeline.steps.verify import Expected, Verdict, VerifyOutcome
from pipeline.store import RenewalFmc
from tasks.context import Context

VALIDATE_PATH = "validate.json"


class NoRouteError(DeviceError):
    """Every route of the device has been tried; only the operator can change that (then `sftrenew retry`)."""

    def __init__(self, device: str, route: str, reason: str) -> None:
        self.reason = reason
        super().__init__(device, route, reason)

    def describe(self) -> str:
        return f"{self.reason}; fix the route, then `sftrenew retry`"


class UnknownPeerError(DeviceError):
    """The device's UUID is unknown: validate could not reach it and the inventory does not name it."""

    def describe(self) -> str:
        return (
            "UUID unknown (unreachable at validate, none in the inventory): add `uuid:` to the inventory "
            "and start a new renewal"
        )


class NoMaterialError(DeviceError):
    """The FMC made no certificate for this device: it has no peer folder there (not registered to it)."""

    def describe(self) -> str:
        return "the FMC made no certificate for it (no /var/sf/peers/<uuid>/ there): is it registered there?"


def requested_at(ctx: Context, renewal_id: str) -> datetime:
    """When the renewal was asked for: the stamp of the copies its pushes keep on the devices."""
    with ctx.db() as db:
        row = store.renewal(session=db, renewal_id=renewal_id)
    if row is None:
        raise LookupError(f"no renewal {renewal_id}")
    return row.requested_at_utc


def fmc_row(ctx: Context, renewal_id: str, fmc: str) -> RenewalFmc:
    with ctx.db() as db:
        return store.renewal_fmc(session=db, renewal_id=renewal_id, fmc=fmc)


def data(
    ctx: Context, renewal_id: str, fmc: str, *, kind: str, path: str, device: str | None = None
) -> bytes:
    with ctx.db() as db:
        rows = store.artifacts_of(session=db, renewal_id=renewal_id, fmc=fmc, kind=kind, device=device)
    found = [r for r in rows if r.path == path]
    if not found:
        raise LookupError(f"renewal {renewal_id}: no {kind} artifact {path} for {device or fmc}")
    return store.artifact_data(found[-1], key=ctx.settings.artifact_key)


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
    plan = plan_fmc(facts)
    document = {
        "fmc_uuid": facts.fmc_uuid,
        "ca_days_left": facts.ca_days_left,
        "peers": [
            {
                "name": p.name,
                "host": p.host,
                "uuid": p.uuid,
                "tunnel": p.tunnel,
                "routes": [str(r) for r in p.routes_ok],
                "action": plan.peers[i].action.name,
            }
            for i, p in enumerate(facts.peers)
        ],
    }
    with ctx.db() as db:
        store.add_artifact(
            session=db,
            renewal_id=renewal_id,
            fmc=facts.fmc,
            device=None,
            kind="validate",
            path=VALIDATE_PATH,
            data=json.dumps(document, indent=1).encode(),
            secret=False,
            key=None,
            now=ctx.now(),
        )
    return plan


def _validate_doc(ctx: Context, renewal_id: str, fmc: str) -> dict[str, object]:
    loaded = json.loads(data(ctx, renewal_id, fmc, kind="validate", path=VALIDATE_PATH))
    if not isinstance(loaded, dict):
        raise TypeError("validate artifact is not an object")
    return loaded


def _peers(ctx: Context, renewal_id: str, fmc: str) -> list[dict[str, str | None]]:
    peers = _validate_doc(ctx, renewal_id, fmc)["peers"]
    return peers if isinstance(peers, list) else []


def expected_peers(ctx: Context, renewal_id: str, fmc: str) -> tuple[list[Expected], str]:
    document = _validate_doc(ctx, renewal_id, fmc)
    peers = _peers(ctx, renewal_id, fmc)
    expected = [Expected(str(p["name"]), str(p["host"]), p.get("uuid")) for p in peers]
    return expected, str(document["fmc_uuid"])


def claim(ctx: Context, renewal_id: str, fmc: str, *, token: str) -> datetime | None:
    """The time of the regeneration claim this task holds (first claim, a retry of the claiming task, or a
    take-over from a holder that must be dead), or None while a live task holds it."""
    now = ctx.now()
    with ctx.db() as db:
        held = store.claim_regeneration(session=db, renewal_id=renewal_id, fmc=fmc, token=token, now=now)
        if not held:
            stale = now - timedelta(seconds=ctx.settings.celery.task_time_limit)
            held = store.take_over_regeneration(
                session=db, renewal_id=renewal_id, fmc=fmc, token=token, stale_before=stale, now=now
            )
        row = store.renewal_fmc(session=db, renewal_id=renewal_id, fmc=fmc)
    return row.regen_claimed_at_utc if held else None


def save_regeneration(ctx: Context, renewal_id: str, pair: FmcPair, outcome: RegenOutcome) -> list[str]:
    """Store the new CA and every known peer's material (keys sealed), record the new CA, and open push
    round 1 for the FMC's peers. Returns the peers."""
    fmc, key, now = outcome.fmc, ctx.settings.artifact_key, ctx.now()
    by_uuid = {str(p["uuid"]): str(p["name"]) for p in _peers(ctx, renewal_id, fmc) if p.get("uuid")}
    devices = [str(p["name"]) for p in _peers(ctx, renewal_id, fmc)]
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


def settled(ctx: Context, renewal_id: str, fmc: str, round_: int, device: str) -> bool:
    """Whether this push slot was settled already (a redelivered or duplicate push has nothing to do)."""
    with ctx.db() as db:
        slots = store.slots(session=db, renewal_id=renewal_id, fmc=fmc, round=round_)
    return any(s.device == device and s.settled_at_utc is not None for s in slots)


def material_for(ctx: Context, renewal_id: str, fmc: str, device: str) -> tuple[PeerMaterial, str]:
    """The files `device` must hold for `fmc`, from the store; UnknownPeerError when its UUID is unknown."""
    peers = {str(p["name"]): p for p in _peers(ctx, renewal_id, fmc)}
    uuid = peers.get(device, {}).get("uuid")
    if not uuid:
        raise UnknownPeerError(device, "none")
    fmc_uuid = str(_validate_doc(ctx, renewal_id, fmc)["fmc_uuid"])
    try:
        ca = data(ctx, renewal_id, fmc, kind="new_ca", path=CA_CERT)
        cert = data(
            ctx, renewal_id, fmc, kind="peer_material", path=certs_pushed(uuid, PEER_CERT), device=device
        )
        key = data(
            ctx, renewal_id, fmc, kind="peer_material", path=certs_pushed(uuid, PEER_KEY), device=device
        )
    except LookupError:
        raise NoMaterialError(device, "none") from None

    material = PeerMaterial(
        uuid, ca, cert, key, CertFacts.from_pem(ca).sha256, CertFacts.from_pem(cert).sha256
    )
    return material, fmc_uuid


def restart_facts(ctx: Context, renewal_id: str, fmc: str, device: str) -> RestartFacts:
    """What the record says this renewal did to the device's files for `fmc`: the push decides from it."""
    with ctx.db() as db:
        row = store.push_restart(session=db, renewal_id=renewal_id, fmc=fmc, device=device)
    if row is None:
        return RestartFacts()
    return RestartFacts(row.write_started_at_utc, row.restarted_at_utc)


def write_started(ctx: Context, renewal_id: str, fmc: str, device: str) -> None:
    """The push is about to change the device's files: recorded (committed) before the first one changes."""
    with ctx.db() as db:
        store.record_write_started(session=db, renewal_id=renewal_id, fmc=fmc, device=device, now=ctx.now())


def restarted(ctx: Context, renewal_id: str, fmc: str, device: str) -> None:
    """sftunnel restarted on the device after this renewal's write: a later attempt has nothing left to do."""
    with ctx.db() as db:
        store.record_restarted(session=db, renewal_id=renewal_id, fmc=fmc, device=device, now=ctx.now())


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

"""The five steps for one FMC pair, in-process: primary first, then secondary, each against its own CA.

This is the renewal without Celery: what `python -m pipeline.steps` runs, what the tests compare the Celery
pipeline against, and a tool of last resort for an operator. Every step's outcome is handed to `report` as
it happens, so a caller can print or record it.

It is the second runner of `pipeline.flow`'s decisions (the Celery tasks are the first): which FMC comes next
(`after_fmc`, over FMC records kept in memory), what a verify makes of its FMC (`after_verify`), and every
push attempt with its route and backoff (`push_with_routes` over `next_attempt`, with the one `RetryPolicy`
the settings ask for). Nothing is recorded in a database here, so there is nothing to resume: a step that
raises fails its FMC, the flow stops, and the error is raised to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.devices.factory import SessionFactory
from pipeline.errors import SftrenewError
from pipeline.flow import Finish, FmcRecord, Start, Stop, after_fmc, after_verify
from pipeline.inventory import Fmc, FmcPair, Ftd
from pipeline.plan import FmcPlan, plan_fmc
from pipeline.settings import Settings
from pipeline.steps.backup import BackupOutcome, backup
from pipeline.steps.push import FactsInMemory, PushAction, PushOutcome, RetryPolicy, push_with_routes
from pipeline.steps.regenerate import RegenOutcome, regenerate
from pipeline.steps.validate import ValidateOutcome, peers_of, validate
from pipeline.steps.verify import Expected, PollPolicy, Recorded, VerifyOutcome, verify

Report = Callable[[str, object], None]


@dataclass(frozen=True)
class FmcRun:
    backup: BackupOutcome
    validate: ValidateOutcome
    plan: FmcPlan
    regenerate: RegenOutcome
    pushes: tuple[PushOutcome, ...]
    verify: VerifyOutcome


def run_fmc(
    factory: SessionFactory, pair: FmcPair, fmc: Fmc, settings: Settings, report: Report = lambda s, o: None
) -> FmcRun:
    peers = peers_of(pair, fmc)
    stamp = datetime.now(UTC)  # names the copies each push keeps on its device
    session = factory.open(fmc.name, factory.routes_for(fmc.name)[0])
    try:
        saved = backup(session)
        report("backup", saved)
        facts = validate(session, factory, peers, now_utc=datetime.now(UTC), workers=settings.step_sessions)
        plan = plan_fmc(facts)
        report("validate", plan)
        regen = regenerate(
            session,
            fmc_uuid=facts.fmc_uuid,
            started_from_sha256=saved.ca_sha256,
            timeout=settings.ssh.regenerate_timeout,
        )
        report("regenerate", regen)
    finally:
        session.close()
    pushes = tuple(_push(factory, facts, regen, peer, settings, report, stamp) for peer in peers)
    expected = [_expected(p, facts, regen, pushed) for p, pushed in zip(peers, pushes, strict=True)]
    session = factory.open(fmc.name, factory.routes_for(fmc.name)[0])
    try:
        checked = verify(
            session,
            factory,
            expected,
            fmc_uuid=facts.fmc_uuid,
            ca_pem=regen.ca_pem,
            policy=PollPolicy(settings.verify_deadline, settings.verify_interval),
            workers=settings.step_sessions,
        )
    finally:
        session.close()
    report("verify", checked)
    return FmcRun(saved, facts, plan, regen, pushes, checked)


def _expected(peer: Fmc | Ftd, facts: ValidateOutcome, regen: RegenOutcome, pushed: PushOutcome) -> Expected:
    """The peer as verify expects it, with what its push found it holding when the push succeeded."""
    uuid = facts.peer(peer.name).uuid
    recorded = None
    if pushed.ok and pushed.held is not None and uuid is not None:
        recorded = Recorded(pushed.held, regen.peer(uuid).cert_pem, str(pushed.route))
    return Expected(peer.name, peer.host, uuid, recorded=recorded)


def _push(
    factory: SessionFactory,
    facts: ValidateOutcome,
    regen: RegenOutcome,
    peer: Fmc | Ftd,
    settings: Settings,
    report: Report,
    stamp: datetime,
) -> PushOutcome:
    uuid = facts.peer(peer.name).uuid
    if uuid is None:
        outcome = PushOutcome(
            peer.name,
            PushAction.WRITE,
            None,
            0,
            ok=False,
            error_kind="UnknownPeerError",
            message="UUID unknown: unreachable and not named in the inventory",
        )
    else:
        outcome = push_with_routes(
            factory,
            peer.name,
            fmc_uuid=facts.fmc_uuid,
            material=regen.peer(uuid),
            backup_stamp_utc=stamp,
            policy=RetryPolicy.of(settings),
            # No database here: the write and the restart are remembered for this run, across its attempts.
            facts=FactsInMemory(),
        )
    report("push", outcome)
    return outcome


def run_pair(
    factory: SessionFactory, pair: FmcPair, settings: Settings, report: Report = lambda s, o: None
) -> tuple[FmcRun, ...]:
    """The FMCs in the order `pipeline.flow.after_fmc` starts them: primary, then secondary (device-facts 8:
    the InternalCA of each node is different). An FMC whose step raised stops the renewal: the error is
    raised once the flow said so."""
    records = {fmc.name: FmcRecord(fmc.name, "pending") for fmc in pair.fmcs}
    entries = {fmc.name: fmc for fmc in pair.fmcs}
    runs: list[FmcRun] = []
    failure: SftrenewError | None = None
    while True:
        match after_fmc(tuple(records.values())):
            case Finish():
                return tuple(runs)
            case Stop() if failure is not None:
                raise failure
            case Start(fmc=name):
                records[name] = FmcRecord(name, "running")
                try:
                    run = run_fmc(factory, pair, entries[name], settings, report)
                except SftrenewError as exc:
                    failure = exc
                    records[name] = FmcRecord(name, "failed")
                    continue
                runs.append(run)
                records[name] = FmcRecord(name, after_verify(run.verify.ok))
            case other:  # Wait: every FMC this process started has ended, so nothing can be running
                raise AssertionError(f"the in-process runner cannot {other}")

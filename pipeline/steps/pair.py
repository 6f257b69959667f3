"""The five steps for one FMC pair, in-process: primary first, then secondary, each against its own CA.

This is the renewal without Celery: what `python -m pipeline.steps` runs, what the tests compare the Celery
pipeline against, and a tool of last resort for an operator. Every step's outcome is handed to `report` as
it happens, so a caller can print or record it.

It is the second runner of `pipeline.flow`'s decisions (the Celery tasks are the first): which FMC comes next
(`after_fmc`, over FMC records kept in memory), what a verify makes of its FMC (`after_verify`), every
push attempt with its route and backoff (`push_with_routes` over `next_attempt`, with the one `RetryPolicy`
the settings ask for), and which devices the push and verify must not log in to (`login_refused`: one that
refused validate's login, and for verify one whose push was refused; this run has one round, so nothing
logs in to them again). Nor does any step log in through a jump server that refused a login in this run
(`SessionFactory.guarded`). Nothing is recorded in a database here, so there is nothing to resume: a step
that raises fails its FMC, the flow stops, and the error is raised to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.devices.factory import SessionFactory
from pipeline.errors import SftrenewError
from pipeline.flow import Finish, FmcRecord, Refused, Start, Stop, after_fmc, after_verify, login_refused
from pipeline.inventory import Fmc, FmcPair, Ftd
from pipeline.plan import FmcPlan, plan_fmc
from pipeline.settings import Settings
from pipeline.steps.backup import BackupOutcome, backup
from pipeline.steps.push import FactsInMemory, PushAction, PushOutcome, RetryPolicy, push_with_routes
from pipeline.steps.regenerate import RegenOutcome, regenerate
from pipeline.steps.validate import PeerFacts, ValidateOutcome, peers_of, validate
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
    expected = [_expected(facts.peer(p.name), regen, pushed) for p, pushed in zip(peers, pushes, strict=True)]
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


def _at_validate(peer: PeerFacts) -> str | None:
    """The kind of the login the peer refused at validate, if it refused one."""
    return peer.refusal.error_kind if peer.refusal is not None else None


def _expected(peer: PeerFacts, regen: RegenOutcome, pushed: PushOutcome) -> Expected:
    """The peer as verify expects it: why it must not log in to it (`login_refused`), and what its push found
    it holding when the push succeeded."""
    push_refused = pushed.error_kind if pushed.action is PushAction.REFUSED else None
    decided = login_refused("verify", 1, at_validate=_at_validate(peer), push_this_round=push_refused)
    recorded = None
    if pushed.ok and pushed.held is not None and peer.uuid is not None:
        recorded = Recorded(pushed.held, regen.peer(peer.uuid).cert_pem, str(pushed.route))
    return Expected(peer.name, peer.host, peer.uuid, _not_logged_in(decided, peer), recorded)


def _not_logged_in(decided: Refused | None, peer: PeerFacts) -> str | None:
    if decided is None:
        return None
    if peer.refusal is not None:  # its push was not logged in either, for this refusal
        return f"not logged in: {peer.refusal.detail} (refused at validate)"
    return f"not logged in: its push was refused ({decided.kind})"


def _push(
    factory: SessionFactory,
    facts: ValidateOutcome,
    regen: RegenOutcome,
    peer: Fmc | Ftd,
    settings: Settings,
    report: Report,
    stamp: datetime,
) -> PushOutcome:
    peer_facts = facts.peer(peer.name)
    uuid = peer_facts.uuid
    refusal = peer_facts.refusal
    if refusal is not None and login_refused("push", 1, at_validate=_at_validate(peer_facts)) is not None:
        outcome = PushOutcome(
            peer.name,
            PushAction.REFUSED,
            refusal.route,
            0,
            ok=False,
            error_kind=refusal.error_kind,
            message=f"refused at validate, so not logged in to again: {refusal.detail}",
        )
    elif uuid is None:
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
    # One renewal: a jump server that refused a login is not logged in to again by any step of it.
    factory = factory.guarded()
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

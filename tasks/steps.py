"""The renewal's Celery tasks: thin wrappers that load by id, open a session, call a step and record it.

Arguments and results are ids, names and counts only (Flower and the broker show them). Every task is
idempotent: a backup or validate runs again harmlessly, the regeneration is claimed once in the database, a
push decides from what the device holds, and a settled push slot is not settled twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from celery import Task, shared_task
from celery.exceptions import Ignore

from pipeline import store
from pipeline.devicepaths import CA_CERT
from pipeline.devices.factory import SessionFactory
from pipeline.devices.session import DeviceSession
from pipeline.errors import SftrenewError
from pipeline.inventory import FmcPair
from pipeline.steps.backup import backup
from pipeline.steps.push import PushAction, can_retry, next_route, push_once
from pipeline.steps.regenerate import regenerate
from pipeline.steps.validate import peers_of, validate
from pipeline.steps.verify import PollPolicy, Verdict, verify
from pipeline.store import FmcState, StepName
from tasks import artifacts
from tasks.context import Context, context
from tasks.flow import advance, shadow, verify_step
from tasks.record import CONTROL_RETRIES, backoff, finish, recording

Result = dict[str, Any]


class StepTask(Task):  # type: ignore[misc]
    """Every step task shows in Flower and the logs as `sftrenew.<step>[<fmc>]` or `[<fmc>-><device>]`, also
    when Celery sends it itself (the next link of a chain, a retry), where a signature's shadow is lost."""

    def shadow_name(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> str:
        step = str(self.name).removeprefix("sftrenew.")
        device = args[2] if step == "push" and len(args) > 2 else None
        return shadow(step, str(args[1]), device) if len(args) > 1 else str(self.name)


def _pair(ctx: Context, renewal_id: str) -> FmcPair:
    with ctx.db() as db:
        row = store.renewal(session=db, renewal_id=renewal_id)
    if row is None:
        raise LookupError(f"no renewal {renewal_id}")
    return ctx.inventory().pair(row.pair)


@contextmanager
def _fmc_session(factory: SessionFactory, fmc: str) -> Iterator[DeviceSession]:
    session = factory.open(fmc, factory.routes_for(fmc)[0])
    try:
        yield session
    finally:
        session.close()


def _control(
    task: Task, renewal_id: str, fmc: str, step: StepName, body: Callable[[Context, FmcPair], Result]
) -> Result:
    """Run an FMC step: retry while the FMC is unreachable, then fail the FMC and the renewal."""
    ctx = context()
    pair = _pair(ctx, renewal_id)
    _, resolver = ctx.devices(pair.name)
    try:
        with recording(
            ctx,
            renewal_id=renewal_id,
            fmc=fmc,
            step=step,
            task_id=task.request.id,
            redact=resolver.redact,
            may_retry=task.request.retries < CONTROL_RETRIES,
        ):
            return body(ctx, pair)
    except SftrenewError as exc:
        if exc.retryable and task.request.retries < CONTROL_RETRIES:
            c = ctx.settings.celery
            raise task.retry(
                exc=exc,
                countdown=backoff(task.request.retries + 1, base=c.retry_backoff, cap=c.retry_backoff_max),
            ) from exc
        with ctx.db() as db:
            store.set_fmc_state(session=db, renewal_id=renewal_id, fmc=fmc, state="failed", now=ctx.now())
        advance(ctx, renewal_id, pair)
        raise


@shared_task(bind=True, base=StepTask, name="sftrenew.backup", max_retries=CONTROL_RETRIES)
def backup_task(self: Task, renewal_id: str, fmc: str) -> Result:
    def body(ctx: Context, pair: FmcPair) -> Result:
        factory, _ = ctx.devices(pair.name)
        with _fmc_session(factory, fmc) as session:
            outcome = backup(session)
        artifacts.save_backup(ctx, renewal_id, outcome)
        return {
            "renewal": renewal_id,
            "fmc": fmc,
            "files": len(outcome.files),
            "ca_sha256": outcome.ca_sha256,
        }

    return _control(self, renewal_id, fmc, "backup", body)


@shared_task(bind=True, base=StepTask, name="sftrenew.validate", max_retries=CONTROL_RETRIES)
def validate_task(self: Task, renewal_id: str, fmc: str) -> Result:
    def body(ctx: Context, pair: FmcPair) -> Result:
        factory, _ = ctx.devices(pair.name)
        entry = pair.primary if pair.primary.name == fmc else pair.secondary
        with _fmc_session(factory, fmc) as session:
            facts = validate(
                session,
                factory,
                peers_of(pair, entry),
                now_utc=ctx.now(),
                workers=ctx.settings.celery.concurrency,
            )
        plan = artifacts.save_validate(ctx, renewal_id, facts)
        return {
            "renewal": renewal_id,
            "fmc": fmc,
            "ca_days_left": facts.ca_days_left,
            "stranded": list(plan.stranded),
            "peers": {p.name: p.action.name for p in plan.peers},
        }

    return _control(self, renewal_id, fmc, "validate", body)


@shared_task(bind=True, base=StepTask, name="sftrenew.regenerate", max_retries=CONTROL_RETRIES)
def regenerate_task(self: Task, renewal_id: str, fmc: str) -> Result:
    def body(ctx: Context, pair: FmcPair) -> Result:
        claimed_at = artifacts.claim(ctx, renewal_id, fmc, token=self.request.id)
        if claimed_at is None:
            raise Ignore()  # another live task holds the claim; it carries the chain on
        row = artifacts.fmc_row(ctx, renewal_id, fmc)
        factory, _ = ctx.devices(pair.name)
        with _fmc_session(factory, fmc) as session:
            outcome = regenerate(
                session,
                fmc_uuid=row.fmc_uuid or "",
                started_from_sha256=row.ca_before_sha256 or "",
                created_sha256=row.ca_after_sha256,
                claimed_at_utc=claimed_at,
                timeout=ctx.settings.ssh.regenerate_timeout,
            )
        devices = artifacts.save_regeneration(ctx, renewal_id, pair, outcome)
        return {
            "renewal": renewal_id,
            "fmc": fmc,
            "ran": outcome.ran,
            "new_ca_sha256": outcome.new_ca_sha256,
            "peers": len(devices),
            "failed_push": len(outcome.failed_pushes) // 3,
        }

    return _control(self, renewal_id, fmc, "regenerate", body)


@shared_task(bind=True, base=StepTask, name="sftrenew.push", max_retries=None)
def push_task(
    self: Task, renewal_id: str, fmc: str, device: str, round_: int, who: str | None = None
) -> Result:
    """One attempt by the route `next_route` gives for this attempt number; Celery retries the rest.

    The push decides from the device's files and the recorded write and restart (`artifacts.restart_facts`),
    and records its intent to write and its restart as they happen, so an attempt that died between the two
    is finished by the next one with a restart. A push refused before any write fails in Flower with
    "refused before any write: ..." and is recorded as refused."""
    ctx = context()
    if artifacts.settled(ctx, renewal_id, fmc, round_, device):
        return {"renewal": renewal_id, "fmc": fmc, "device": device, "state": "already settled"}
    pair = _pair(ctx, renewal_id)
    factory, resolver = ctx.devices(pair.name)
    attempt = self.request.retries + 1
    direct = ctx.settings.push_direct_attempts
    routes = factory.routes_for(device)
    route = next_route(routes, attempt, direct_attempts=direct)
    more = next_route(routes, attempt + 1, direct_attempts=direct) is not None
    try:
        with recording(
            ctx,
            renewal_id=renewal_id,
            fmc=fmc,
            step="push",
            device=device,
            task_id=self.request.id,
            route=str(route) if route else None,
            who=who,
            redact=resolver.redact,
            may_retry=more,
        ) as record:
            # Inside the record, so that a device with no material or no route is recorded as failed,
            # counted in, and offered to `sftrenew retry` like any other failure.
            material, fmc_uuid = artifacts.material_for(ctx, renewal_id, fmc, device)
            if route is None:
                raise artifacts.NoRouteError(device, "none", "no route left to try")
            outcome = push_once(
                factory,
                device,
                route,
                fmc_uuid=fmc_uuid,
                material=material,
                backup_stamp_utc=artifacts.requested_at(ctx, renewal_id),
                recorded=artifacts.restart_facts(ctx, renewal_id, fmc, device),
                on_write_started=lambda: artifacts.write_started(ctx, renewal_id, fmc, device),
                on_restarted=lambda: artifacts.restarted(ctx, renewal_id, fmc, device),
            )
            skipped = outcome.action is PushAction.SKIP
            finish(ctx, record, "skipped" if skipped else "succeeded", message=outcome.message)
    except SftrenewError as exc:
        if can_retry(exc) and more:
            c = ctx.settings.celery
            raise self.retry(
                exc=exc,
                countdown=backoff(attempt, base=c.retry_backoff, cap=c.retry_backoff_max),
            ) from exc
        _settle(ctx, renewal_id, fmc, round_, device, "failed")
        raise
    _settle(ctx, renewal_id, fmc, round_, device, "skipped" if skipped else "succeeded")
    return {
        "renewal": renewal_id,
        "fmc": fmc,
        "device": device,
        "route": str(route),
        "attempt": attempt,
        "action": outcome.action.value,
    }


def _settle(
    ctx: Context,
    renewal_id: str,
    fmc: str,
    round_: int,
    device: str,
    outcome: Literal["succeeded", "skipped", "failed"],
) -> None:
    """Count this push in; the one that completes the round sends the verify."""
    with ctx.db() as db:
        last = store.settle_push(
            session=db,
            renewal_id=renewal_id,
            fmc=fmc,
            round=round_,
            device=device,
            outcome=outcome,
            now=ctx.now(),
        )
    if last:
        verify_step(renewal_id, fmc, round_).apply_async()


@shared_task(bind=True, base=StepTask, name="sftrenew.verify", max_retries=CONTROL_RETRIES)
def verify_task(self: Task, renewal_id: str, fmc: str, round_: int) -> Result:
    def body(ctx: Context, pair: FmcPair) -> Result:
        factory, _ = ctx.devices(pair.name)
        expected, fmc_uuid = artifacts.expected_peers(ctx, renewal_id, fmc)
        ca_pem = artifacts.data(ctx, renewal_id, fmc, kind="new_ca", path=CA_CERT)
        policy = PollPolicy(ctx.settings.verify_deadline, ctx.settings.verify_interval)
        with _fmc_session(factory, fmc) as session:
            outcome = verify(session, factory, expected, fmc_uuid=fmc_uuid, ca_pem=ca_pem, policy=policy)
        artifacts.save_verdicts(ctx, renewal_id, fmc, outcome)
        with ctx.db() as db:
            state: FmcState = "succeeded" if outcome.ok else "partial"
            store.set_fmc_state(session=db, renewal_id=renewal_id, fmc=fmc, state=state, now=ctx.now())
        after = advance(ctx, renewal_id, pair)
        bad = {d.name: d.verdict.value for d in outcome.devices if d.verdict is not Verdict.VERIFIED}
        return {
            "renewal": renewal_id,
            "fmc": fmc,
            "round": round_,
            "verified": len(outcome.devices) - len(bad),
            "not_verified": bad,
            "next": after,
        }

    return _control(self, renewal_id, fmc, "verify", body)

"""The renewal's Celery tasks: thin. Each loads by id, calls one step, records it, and hands the flow's next
decision (`pipeline.flow`) to the canvas.

What they share lives in modules named for it: `tasks.control` (an FMC step's run: record, retry or fail the
FMC), `tasks.pushing` (a push attempt's three transactions), `tasks.artifacts` (what steps store and read
back), `tasks.flow` (the canvas and the I/O of the flow's decisions).

Arguments and results are ids, names and counts only (Flower and the broker show them). Every task is
idempotent: a backup or validate runs again harmlessly, the regeneration is claimed once in the database, a
push decides from what the device holds, and a settled push slot is not settled twice.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from pipeline import flow, notices
from pipeline.devicepaths import CA_CERT
from pipeline.errors import StrandedDevicesError
from pipeline.steps.backup import backup
from pipeline.steps.regenerate import regenerate
from pipeline.steps.validate import peers_of, validate
from pipeline.steps.verify import PollPolicy, Verdict, verify
from tasks import artifacts, pushing
from tasks.context import context
from tasks.control import IGNORED_MESSAGE, control_run, stand_aside
from tasks.flow import push_step, send, shadow
from tasks.notify import notify, wanted
from tasks.routing import expected_queue

Result = dict[str, Any]


class StepTask(Task):  # type: ignore[misc]
    """Every step task shows in Flower and the logs as `sftrenew.<step>[<renewal> <fmc>]` or
    `[<renewal> <fmc>-><device>]` (`tasks.flow.shadow`), also when Celery sends it itself (the next link of a
    chain, a retry), where a signature's shadow is lost."""

    def shadow_name(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> str:
        step = str(self.name).removeprefix("sftrenew.")
        device = args[2] if step == "push" and len(args) > 2 else None
        return shadow(step, str(args[0]), str(args[1]), device) if len(args) > 1 else str(self.name)


@shared_task(bind=True, base=StepTask, name="sftrenew.backup", max_retries=flow.CONTROL_RETRIES)
def backup_task(self: Task, renewal_id: str, fmc: str) -> Result:
    with control_run(self, renewal_id, fmc, "backup") as run:
        with run.fmc_session() as session:
            outcome = backup(session)
        artifacts.save_backup(run.ctx, renewal_id, outcome)
    return {"renewal": renewal_id, "fmc": fmc, "files": len(outcome.files), "ca_sha256": outcome.ca_sha256}


@shared_task(bind=True, base=StepTask, name="sftrenew.validate", max_retries=flow.CONTROL_RETRIES)
def validate_task(self: Task, renewal_id: str, fmc: str) -> Result:
    with control_run(self, renewal_id, fmc, "validate") as run:
        peers = peers_of(run.pair, run.entry)
        with run.fmc_session() as session:
            facts = validate(
                session,
                run.factory.guarded(),  # a jump server that refused a login is not asked again by this step
                peers,
                now_utc=run.ctx.now(),
                workers=run.ctx.settings.step_sessions,
                known=artifacts.known_at_plan(run.ctx, renewal_id, fmc),
            )
        plan = artifacts.save_validate(run.ctx, renewal_id, facts)
        unaccepted = [n for n in plan.stranded if n not in artifacts.accepted_stranded(run.ctx, renewal_id)]
        if unaccepted:  # the gate at enqueue saw them reachable, or nobody accepted losing them
            raise StrandedDevicesError(
                fmc,
                unaccepted,
                "found by the renewal's own validate and not accepted at enqueue; no CA was regenerated",
            )
    return {
        "renewal": renewal_id,
        "fmc": fmc,
        "awaiting_approval": artifacts.awaiting_approval(context(), renewal_id),
        "ca_days_left": facts.ca_days_left,
        "probed": sum(not p.from_plan for p in facts.peers),
        "from_plan": sum(p.from_plan for p in facts.peers),
        "stranded": list(plan.stranded),
        "peers": {p.name: p.action.name for p in plan.peers},
    }


@shared_task(bind=True, base=StepTask, name="sftrenew.regenerate", max_retries=flow.CONTROL_RETRIES)
def regenerate_task(self: Task, renewal_id: str, fmc: str) -> Result:
    """The claim is taken before the FMC's CA is read; the intent to run generate_certs.pl is recorded after
    the FMC was found on the backed-up CA and before the script runs (`pipeline.steps.regenerate`)."""
    token = str(self.request.id)
    if artifacts.awaiting_approval(context(), renewal_id):
        # Held for approval: the chain stops here (nothing recorded); `sftrenew approve` sends this step.
        if wanted(context().settings):  # the pair's name is read only for a notice someone gets
            held = notices.awaiting_approval(renewal_id, artifacts.pair_name(context(), renewal_id), fmc)
            notify(context().settings, held)
        stand_aside(
            f"renewal {renewal_id} awaits approval: `sftrenew approve {renewal_id}` regenerates", "held"
        )
    with control_run(self, renewal_id, fmc, "regenerate") as run:
        if not artifacts.claim(run.ctx, renewal_id, fmc, token=token):
            stand_aside(IGNORED_MESSAGE)  # another live task holds the claim; it carries the chain on
        row = artifacts.fmc_row(run.ctx, renewal_id, fmc)

        def record_intent() -> None:
            if not artifacts.record_intent(run.ctx, renewal_id, fmc, token=token):
                stand_aside(IGNORED_MESSAGE)  # the claim was taken over: its taker runs generate_certs.pl

        with run.fmc_session() as session:
            outcome = regenerate(
                session,
                fmc_uuid=row.fmc_uuid or "",
                started_from_sha256=row.ca_before_sha256 or "",
                created_sha256=row.ca_after_sha256,
                intent_recorded=row.regen_intent_at_utc is not None,
                record_intent=record_intent,
                timeout=run.ctx.settings.ssh.regenerate_timeout,
            )
        devices = artifacts.save_regeneration(run.ctx, renewal_id, run.pair, outcome)
    return {
        "renewal": renewal_id,
        "fmc": fmc,
        "ran": outcome.ran,
        "new_ca_sha256": outcome.new_ca_sha256,
        "peers": len(devices),
        "failed_push": len(outcome.failed_pushes) // 3,
    }


@shared_task(bind=True, base=StepTask, name="sftrenew.push", max_retries=None)
def push_task(
    self: Task, renewal_id: str, fmc: str, device: str, round_: int, who: str | None = None
) -> Result:
    """One attempt, by the route the flow gives this attempt number; Celery retries the rest after the flow's
    delay. At most three database transactions (`tasks.pushing`): load and start, the intent to write (only
    when the device needs a write), end and settle.

    The push decides from the device's files and the recorded write and restart, so an attempt that died
    between the two is finished by the next one with a restart. A push refused before any write fails in
    Flower with "refused before any write: ..." and is recorded as refused. While the renewal is paused, a
    push does not start (nothing recorded, PAUSED in Flower); `sftrenew resume` sends it again. Any other
    delivery either checks the device (and pushes if it must) or fails with its reason (`pushing.begin`);
    one delivered on another queue than its device's is sent on there (`tasks.routing`)."""
    ctx, slot = context(), pushing.Slot(renewal_id, fmc, device, round_)
    arrived, wanted = (self.request.delivery_info or {}).get("routing_key"), expected_queue(device)
    if arrived and arrived != wanted:  # sent without the renewal's queue (Flower's apply, a script)
        push_step(renewal_id, fmc, device, wanted, round_, who).apply_async()
        stand_aside(
            f"delivered on queue {arrived!r}; sent on to {wanted!r}, where pushes to {device} go", "forwarded"
        )
    try:
        attempt = pushing.begin(ctx, slot, self.request.retries + 1, task_id=self.request.id, who=who)
    except pushing.Paused:  # nothing recorded: `sftrenew resume` sends the push again
        stand_aside(
            f"renewal {renewal_id} is paused: push to {device} not started; `sftrenew resume` sends it",
            "paused",
        )
    try:
        outcome = attempt.push()
    except Exception as exc:
        again, then = attempt.failed(exc)
        send(ctx, renewal_id, attempt.pair, then)
        if again is not None:
            # The attempt's round, which a re-applied push of a failed slot opened (`pushing.begin`).
            retried = (renewal_id, fmc, device, attempt.slot.round, who)
            raise self.retry(args=retried, exc=exc, countdown=again.delay_s) from exc
        raise
    send(ctx, renewal_id, attempt.pair, attempt.succeeded(outcome))
    return {
        "renewal": renewal_id,
        "fmc": fmc,
        "device": device,
        "route": str(attempt.route),
        "attempt": attempt.number,
        "action": outcome.action.value,
    }


@shared_task(bind=True, base=StepTask, name="sftrenew.verify", max_retries=flow.CONTROL_RETRIES)
def verify_task(self: Task, renewal_id: str, fmc: str, round_: int) -> Result:
    if artifacts.paused(context(), renewal_id):  # nothing recorded: `sftrenew resume` sends it again
        stand_aside(
            f"renewal {renewal_id} is paused: {fmc}'s verify not started; `sftrenew resume` sends it",
            "paused",
        )
    with control_run(self, renewal_id, fmc, "verify") as run:
        expected, fmc_uuid = artifacts.expected_peers(run.ctx, renewal_id, fmc)
        ca_pem = artifacts.data(run.ctx, renewal_id, fmc, kind="new_ca", path=CA_CERT)
        policy = PollPolicy(run.ctx.settings.verify_deadline, run.ctx.settings.verify_interval)
        with run.fmc_session() as session:
            outcome = verify(
                session,
                run.factory.guarded(),  # as validate's
                expected,
                fmc_uuid=fmc_uuid,
                ca_pem=ca_pem,
                policy=policy,
                workers=run.ctx.settings.step_sessions,
            )
        artifacts.save_verdicts(run.ctx, renewal_id, fmc, outcome)
        after = run.end_fmc(flow.after_verify(outcome.ok))
    bad = {d.name: d.verdict.value for d in outcome.devices if d.verdict is not Verdict.VERIFIED}
    return {
        "renewal": renewal_id,
        "fmc": fmc,
        "round": round_,
        "verified": len(outcome.devices) - len(bad),
        "not_verified": bad,
        "next": after,
    }

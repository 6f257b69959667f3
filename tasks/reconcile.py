"""The reconciler: renewals whose messages were lost (a Redis restart, a purge) carry on from the database.

Run periodically (Celery beat, `sftrenew worker --beat` on one worker) or by hand (`sftrenew reconcile`). A
renewal is stalled when nothing was recorded for it for `stall_after` seconds; what to send again is decided
by `pipeline.flow.resume` from what was recorded, and sent by `tasks.flow.resend`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task

from pipeline import store
from pipeline.errors import SftrenewError
from tasks.context import Context, context
from tasks.flow import resend

log = logging.getLogger(__name__)

#: The reconciler's task: for `celery call`; the beat runs the reconciler itself (`workers.beat`).
RECONCILE_TASK = "sftrenew.reconcile"


def reconcile_stalled(ctx: Context) -> dict[str, str]:
    """Send again the next piece of every stalled renewal; returns renewal id -> what was sent, or why the
    renewal was skipped. One renewal that cannot be carried on (its pair gone from the inventory, a record
    that does not read back, material missing, a bug) is marked with the reason and skipped; the others go
    on."""
    older = timedelta(seconds=ctx.settings.celery.stall_after)
    with ctx.db() as db:
        stalled = [(r.id, r.pair) for r in store.stalled(session=db, older_than=older, now=ctx.now())]
    done: dict[str, str] = {}
    if not stalled:
        return done
    inventory = ctx.inventory()
    for renewal_id, pair in stalled:
        try:
            sent = resend(ctx, renewal_id, inventory.pair(pair))
        except Exception as exc:  # one renewal must not stop the others; the reason is kept
            done[renewal_id] = f"skipped: {_mark_skipped(ctx, renewal_id, exc)}"
            continue
        log.warning("renewal %s stalled: sent %s again", renewal_id, sent.kind)
        done[renewal_id] = sent.kind
    return done


def _mark_skipped(ctx: Context, renewal_id: str, exc: Exception) -> str:
    """Record why the reconciler could not carry the renewal on (once per distinct reason); the reason."""
    reason = str(exc) if isinstance(exc, SftrenewError | LookupError) else f"unexpected {type(exc).__name__}"
    log.error(
        "renewal %s skipped by the reconciler: %s",
        renewal_id,
        reason,
        exc_info=not isinstance(exc, SftrenewError | LookupError),
    )
    with ctx.db() as db:
        last = store.events_of(session=db, renewal_id=renewal_id, action="reconcile-skipped")
        if not last or not reason.startswith((last[-1].detail or "").removesuffix("…")):
            store.add_event(
                session=db, renewal_id=renewal_id, action="reconcile-skipped", now=ctx.now(), detail=reason
            )
    return reason


@shared_task(name=RECONCILE_TASK)
def reconcile_task() -> dict[str, Any]:
    done = reconcile_stalled(context())
    return {"stalled": len(done), "resent": done}

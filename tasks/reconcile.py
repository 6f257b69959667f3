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
from tasks.context import Context, context
from tasks.flow import resend

log = logging.getLogger(__name__)


def reconcile_stalled(ctx: Context) -> dict[str, str]:
    """Send again the next piece of every stalled renewal; returns renewal id -> what was sent."""
    older = timedelta(seconds=ctx.settings.celery.stall_after)
    with ctx.db() as db:
        stalled = [(r.id, r.pair) for r in store.stalled(session=db, older_than=older, now=ctx.now())]
    done: dict[str, str] = {}
    if not stalled:
        return done
    inventory = ctx.inventory()
    for renewal_id, pair in stalled:
        sent = resend(ctx, renewal_id, inventory.pair(pair))
        log.warning("renewal %s stalled: sent %s again", renewal_id, sent.kind)
        done[renewal_id] = sent.kind
    return done


@shared_task(name="sftrenew.reconcile")
def reconcile_task() -> dict[str, Any]:
    done = reconcile_stalled(context())
    return {"stalled": len(done), "resent": done}

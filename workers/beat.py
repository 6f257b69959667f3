"""The beat that runs the reconciler itself, so a round that finds nothing stalled leaves no task behind.

Celery beat sends each due entry as a task. For the reconciler, every `SFTRENEW_RECONCILE_INTERVAL` seconds,
that fills Flower's task list (and the result backend) with reconcile tasks that did nothing, and pushes a
renewal's own tasks off Flower's first page. `ReconcilingScheduler` runs the reconcile entry in the beat
instead (`tasks.reconcile.reconcile_stalled`, the same function `sftrenew reconcile` runs): a quiet round
leaves a debug line; a round that sends work again logs it, and what it sends (the renewal's own steps,
named by renewal, step, FMC and device) shows in Flower like any other task. Other entries are sent as usual.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

from tasks.context import context
from tasks.reconcile import RECONCILE_TASK, reconcile_stalled

log = logging.getLogger(__name__)


class ReconcilingScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's default scheduler, except that the reconcile entry runs here rather than as a task."""

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:  # noqa: ANN401 - Celery's
        if entry.task != RECONCILE_TASK:
            super().apply_entry(entry, producer)
            return
        try:
            done = reconcile_stalled(context())
        except Exception:  # the beat must live on: the next round tries again
            log.exception("the reconciler's round failed; the next round tries again")
            return
        if done:
            log.warning("reconciler: %s", "; ".join(f"{rid}: {what}" for rid, what in done.items()))
        else:
            log.debug("reconciler: nothing stalled")

"""Flower as the renewal's live view, and no more: what `sftrenew flower` turns off or guards first.

Flower is the operator's window on a running renewal, behind a password. Out of the box, that password (or
none, for `/metrics`) also lets anyone who has it shut a worker down, resize its pool, or stop it consuming a
queue, in the middle of a renewal, with no record in the renewal's history; and `/metrics` answers anyone
with every task and worker name (device names among them). So, before Flower builds its application:

- `/metrics` needs the same credentials as every other page (Prometheus scrapes it with basic auth);
- the worker-control endpoints (shut down, pool restart/grow/shrink/autoscale, add or cancel a queue
  consumer, change a task's time or rate limit) answer 403 and say where that control lives instead;
- the task list shows, by default, what an operator watching a renewal needs: the name (renewal, step, FMC,
  device), its state, retries, exception and runtime.

What stays possible through Flower, for whoever has the password: every page and read API, re-applying or
sending a task (it is routed to the renewal's queue, `tasks.routing`, and a push delivered again pushes or
fails with its reason), revoking a task that has not started, and `/healthcheck` (no data, no credentials,
for a load balancer). Workers are stopped by their service manager (SIGTERM: `systemctl stop`, `docker
compose stop`), and sized by `--concurrency` / `SFTRENEW_WORKER_CONCURRENCY` (docs/scaling.md).
"""

from __future__ import annotations

from typing import Any, Final

from flower import urls
from flower.api import control
from flower.views import BaseHandler
from flower.views.monitor import Metrics
from tornado import web

#: The task list's columns, in order (Flower's `--tasks_columns` slugs).
TASK_COLUMNS: Final = "name,state,retries,exception,runtime,received,worker,uuid"

#: Flower's handlers that control workers rather than show them.
WORKER_CONTROL: Final[tuple[type[Any], ...]] = (
    control.WorkerShutDown,
    control.WorkerPoolRestart,
    control.WorkerPoolGrow,
    control.WorkerPoolShrink,
    control.WorkerPoolAutoscale,
    control.WorkerQueueAddConsumer,
    control.WorkerQueueCancelConsumer,
    control.TaskTimout,
    control.TaskRateLimit,
)

REFUSED: Final = (
    "turned off by sftrenew: a worker is stopped by its service manager (SIGTERM) and sized by "
    "SFTRENEW_WORKER_CONCURRENCY, not through Flower (docs/user-guide.md, Watching it in Flower)"
)


class WorkerControlRefused(BaseHandler):  # type: ignore[misc]
    """Answers 403 to a worker-control request, after the password check (so an anonymous caller learns
    nothing, not even that the endpoint exists)."""

    @web.authenticated
    def post(self, *_: str) -> None:
        raise web.HTTPError(403, REFUSED)

    @web.authenticated
    def get(self, *_: str) -> None:
        raise web.HTTPError(403, REFUSED)


class GuardedMetrics(Metrics):  # type: ignore[misc]
    """Flower's Prometheus metrics, behind the same credentials as the pages."""

    @web.authenticated
    async def get(self) -> None:
        await super().get()


def guard_flower() -> None:
    """Replace, in Flower's handler table, the worker-control handlers and `/metrics` (call before Flower
    builds its application: it reads this table once, then)."""
    guarded: list[Any] = []
    for entry in urls.handlers:
        handler = entry[1] if isinstance(entry, tuple) else entry.handler_class
        if isinstance(entry, tuple) and handler in WORKER_CONTROL:
            guarded.append((entry[0], WorkerControlRefused))
        elif isinstance(entry, tuple) and handler is Metrics:
            guarded.append((entry[0], GuardedMetrics))
        else:
            guarded.append(entry)
    urls.handlers[:] = guarded

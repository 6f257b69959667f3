"""Which queue a renewal's task goes to, whoever sends it.

The renewal's own sends name the queue (`tasks.flow`: `control` for the FMC steps, `push` or `push.<site>`
for a device's push, from its inventory entry). Others do not: Flower's "apply" and `send-task`, `celery
call`, a script. Celery then asks the app's routers (`task_routes`), and without one a push would land on the
default queue, `control`, where a worker far from the device's site may take it. `route` gives every
sender the renewal's choice from the task's arguments and the inventory (device names are unique in it), and
`expected_queue` lets the push task itself check where it was delivered (a sender without the inventory).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.errors import SftrenewError
from pipeline.inventory import Inventory
from tasks.context import context
from tasks.flow import queue_prefix, site_of
from tasks.queues import control_queue, push_queue

log = logging.getLogger(__name__)

#: The tasks whose queue is `control`, whatever their arguments.
CONTROL_TASKS = frozenset(
    {"sftrenew.backup", "sftrenew.validate", "sftrenew.regenerate", "sftrenew.verify", "sftrenew.reconcile"}
)
PUSH_TASK = "sftrenew.push"


def device_queue(inventory: Inventory, device: str, prefix: str = "") -> str:
    """The push queue of `device`: `push.<site>` for an FTD whose entry names a site, else `push` (the HA
    peer, an FTD without a site, or a name the inventory no longer has); within `prefix`."""
    for pair in inventory.pairs.values():
        if any(ftd.name == device for ftd in pair.ftds):
            return push_queue(site_of(pair, device), prefix)
    return push_queue(None, prefix)


def expected_queue(device: str) -> str:
    """The queue a push to `device` belongs on, by the inventory and queue prefix this process has now."""
    ctx = context()
    return device_queue(ctx.inventory(), device, ctx.settings.celery.queue_prefix)


def route(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any], **_: object
) -> dict[str, str] | None:
    """Celery's router: the queue of a renewal task sent without one (an explicit queue wins, in Celery)."""
    if name in CONTROL_TASKS:
        return {"queue": control_queue(queue_prefix())}
    if name != PUSH_TASK:
        return None
    device = args[2] if len(args) > 2 else kwargs.get("device")
    if not isinstance(device, str):
        return None  # the task fails on its arguments wherever it runs
    try:
        return {"queue": expected_queue(device)}
    except (SftrenewError, OSError) as exc:
        # No inventory in this process (Flower is given none by default): the push task checks on arrival.
        log.info(
            "push to %s sent without a queue and no inventory here (%s): the worker routes it", device, exc
        )
        return {"queue": push_queue(None, queue_prefix())}

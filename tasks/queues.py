"""The queues the renewal's tasks go to: named here, below the worker, so tasks route themselves.

`control` takes the FMC steps, `push` the device pushes, and `push.<site>` the pushes of FTDs whose inventory
entry names a site, so a worker near that site's jump server can serve it (`sftrenew worker -Q push.dc2`).
With a prefix (`SFTRENEW_QUEUE_PREFIX`, e.g. `lab`) every name starts with it (`lab.control`, `lab.push`,
`lab.push.dc2`): a deployment with another prefix on the same Redis database never takes these tasks.
"""

from __future__ import annotations

CONTROL_QUEUE = "control"
PUSH_QUEUE = "push"


def queue_name(queue: str, prefix: str = "") -> str:
    """`queue` within `prefix` (unchanged without one)."""
    return f"{prefix}.{queue}" if prefix else queue


def control_queue(prefix: str = "") -> str:
    return queue_name(CONTROL_QUEUE, prefix)


def push_queue(site: str | None, prefix: str = "") -> str:
    return queue_name(f"{PUSH_QUEUE}.{site}" if site else PUSH_QUEUE, prefix)

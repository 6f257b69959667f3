"""The queues the renewal's tasks go to: named here, below the worker, so tasks route themselves.

`control` takes the FMC steps, `push` the device pushes, and `push.<site>` the pushes of FTDs whose inventory
entry names a site, so a worker near that site's jump server can serve it (`sftrenew worker -Q push.dc2`).
"""

from __future__ import annotations

CONTROL_QUEUE = "control"
PUSH_QUEUE = "push"


def push_queue(site: str | None) -> str:
    return f"{PUSH_QUEUE}.{site}" if site else PUSH_QUEUE

"""Keep a Celery worker running: restart it when it dies on its own.

A worker can die of its broker: when Redis restarts, kombu may fail while restoring unacknowledged messages
and the worker stops with "Unrecoverable error" (a known class of kombu bugs). The renewal itself survives
that (the database is the record and the reconciler sends lost work again), but only if a worker comes back.
`sftrenew worker` does it, on a plain command line, under systemd and in compose's containers alike, and
stops on a refused configuration (exit 2), so a service manager that restarts on failure (compose
`on-failure:5`) is not asked to restart a bad setting forever. SIGINT and SIGTERM are passed to the
child and end the supervision.

`sftrenew worker` checks its settings, then replaces itself with `python -m workers.supervise CHILD...`: the
supervisor imports only the standard library, so the process that only waits costs a few MB, not the ~120 MB
of a process that has imported Celery, SQLAlchemy and the CLI.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)

MAX_PAUSE = 30.0
EXIT_USAGE = 2
#: A child that ran this long before dying counts as healthy: the pause starts again from one second.
HEALTHY_RUN = 60.0


def supervise(argv: Sequence[str]) -> int:
    """Run `argv` until it exits 0 or we are told to stop; restart it (with a growing pause) otherwise."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    pause = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(argv))
        code = child.wait()
        if stopping or code in (0, EXIT_USAGE):
            # 2 is a refused configuration: starting again would only fail again.
            return 0 if stopping else code
        pause = 1.0 if time.monotonic() - started > HEALTHY_RUN else min(MAX_PAUSE, pause * 2)
        log.warning("the Celery worker exited with %s; starting it again in %.0f s", code, pause)
        time.sleep(pause)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m workers.supervise CHILD_ARGV...`: supervise the command given after the module name."""
    child = list(sys.argv[1:] if argv is None else argv)
    if not child:
        print("usage: python -m workers.supervise PROGRAM [ARG...]", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return supervise(child)


if __name__ == "__main__":
    raise SystemExit(main())

"""How many logins run at once through one jump server, process-wide, and the retry of a login it dropped.

A jump server is a plain Linux host with OpenSSH's sshd, which sheds load by `MaxStartups`: while 10
connections are still unauthenticated (its default, `10:30:100`), it closes new ones at random, more often
the more are waiting, right after accepting them and before sending its banner. Each jump-route session logs
in to the jump server on a connection of its own, and one step opens `SFTRENEW_STEP_SESSIONS` (32) sessions
at once: unbounded, a step would have its own logins dropped. So the logins through one jump server
(connect, key exchange, authentication: what MaxStartups counts) share one bound per process,
`SshSettings.jump_logins`, keyed by the address dialled. The session's life after its login is not bounded
here, as sshd does not count it.

Other clients (other workers, operators) wait on the same sshd, so a drop can still come: a login the jump
server closed before its banner is tried again, up to `LOGIN_ATTEMPTS` in all, after a short jittered pause
taken outside the bound. Whether an error is such a drop is the caller's to say (it knows the SSH library);
nothing else is retried here: a refused credential or host key counts towards the jump server's AAA
lockout, and a timeout has already waited its full time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Logins tried per session through a jump server that keeps closing them before its banner.
LOGIN_ATTEMPTS = 3
#: The pause before trying again, drawn anew each time, so that logins dropped together do not come back
#: together.
PAUSE_S = (0.2, 1.0)

_lock = threading.Lock()
# By (host, port, limit): a process has one settings object, so one limit per address; tests may hold two.
_bounds: dict[tuple[str, int, int], threading.BoundedSemaphore] = {}


def _bound(host: str, port: int, limit: int) -> threading.BoundedSemaphore:
    with _lock:
        return _bounds.setdefault((host, port, limit), threading.BoundedSemaphore(limit))


def log_in(
    host: str,
    port: int,
    limit: int,
    attempt: Callable[[int], None],
    dropped: Callable[[BaseException], bool],
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """Run `attempt(n)`, the login to the jump server at `host:port` (n = 1, 2, ...), with at most `limit`
    such logins at once in this process. When it raises an error `dropped` takes for a connection closed
    before the banner, pause and run it again (the attempt opens a fresh connection), up to
    `LOGIN_ATTEMPTS`; any other error, or the last attempt's, is raised as it came."""
    for n in range(1, LOGIN_ATTEMPTS + 1):
        try:
            with _bound(host, port, limit):
                attempt(n)
        except Exception as exc:
            if n == LOGIN_ATTEMPTS or not dropped(exc):
                raise
            pause = random.uniform(*PAUSE_S)  # noqa: S311 - jitter, not a secret
            log.info(
                "jump server %s:%s closed login attempt %d of %d before its SSH banner (MaxStartups?); "
                "again in %.1f s",
                host,
                port,
                n,
                LOGIN_ATTEMPTS,
                pause,
            )
            sleep(pause)
        else:
            return

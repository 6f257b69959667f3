"""A simulated device's SSH server: its listener, and the login it accepts (password, optionally from one
source address only).

Like OpenSSH's sshd, the server sheds load by its `MaxStartups` (the `max_startups` knob): while some
connections are still unauthenticated, a new one may be closed right after accept, before the server's
version banner, at random with sshd's probability. The count is per device (its front and jump-only
listeners are one sshd), and a dropped connection is not counted in it.

Each accepted session is a `session.Session` on the device's `Endpoint`; the jump server's listener
(`jump`) is this one plus forwarding, and a device's published address (`routes`) opens and closes it.
"""

from __future__ import annotations

import functools
import hmac
import logging
import random
from collections.abc import Callable

import asyncssh

from sftlab.fleet.spec import StartupLimits
from sftlab.shell.session import Endpoint, Session

log = logging.getLogger(__name__)


class DeviceServer(asyncssh.SSHServer):
    """Password auth for the device's one login; optionally only from one source address."""

    def __init__(self, endpoint: Endpoint, only_from: str | None = None) -> None:
        self._endpoint = endpoint
        self._only_from = only_from
        self._conn: asyncssh.SSHServerConnection | None = None
        self._unauthenticated = False  # counted in the endpoint's `unauthenticated`

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        # Called before asyncssh sends its version: an abort here closes the socket before any banner.
        self._conn = conn
        ep = self._endpoint
        ep.connections.add(conn)
        peer = conn.get_extra_info("peername")
        if self._only_from is not None and (not peer or peer[0] != self._only_from):
            conn.abort()
            return
        if _past_max_startups(ep.unauthenticated, ep.knobs.max_startups):
            ep.startups_dropped += 1
            local = conn.get_extra_info("sockname")
            log.info(
                "%s: drop connection #%d from [%s]:%s on [%s]:%s past MaxStartups",
                ep.name,
                ep.unauthenticated,
                *(peer or ("?", 0))[:2],
                *(local or ("?", 0))[:2],
            )
            conn.abort()
            return
        ep.unauthenticated += 1
        self._unauthenticated = True

    def auth_completed(self) -> None:
        self._authenticated_or_gone()

    def connection_lost(self, exc: Exception | None) -> None:
        self._authenticated_or_gone()
        if self._conn is not None:
            self._endpoint.connections.discard(self._conn)

    def _authenticated_or_gone(self) -> None:
        if self._unauthenticated:
            self._unauthenticated = False
            self._endpoint.unauthenticated -= 1

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ep = self._endpoint
        ok = username == ep.login_user and hmac.compare_digest(password.encode(), ep.password.encode())
        if ok:
            ep.usage.logins += 1
        else:
            ep.refused_logins += 1
        return ok


def _past_max_startups(pending: int, max_startups: str) -> bool:
    """sshd's draw: drop with `StartupLimits.drop_percent` chance (arc4random_uniform(100) < p there)."""
    percent = _limits(max_startups).drop_percent(pending)
    # A device's load shedding, not cryptography: sshd's own draw is just as plain.
    return percent > 0 and random.randrange(100) < percent  # noqa: S311


@functools.lru_cache(maxsize=16)
def _limits(max_startups: str) -> StartupLimits:
    """The knob's value parsed once (the spec validated it), not at every connection."""
    return StartupLimits.parse(max_startups)


async def listen(
    endpoint: Endpoint,
    host: str,
    port: int,
    host_key: asyncssh.SSHKey,
    *,
    only_from: str | None = None,
    server_factory: Callable[[], asyncssh.SSHServer] | None = None,
) -> asyncssh.SSHAcceptor:
    """Start an SSH listener for the device on (host, port); port 0 picks a free one."""

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await Session(process, endpoint).run()

    return await asyncssh.listen(
        host,
        port,
        server_factory=server_factory or (lambda: DeviceServer(endpoint, only_from)),
        server_host_keys=[host_key],
        process_factory=handle,
        encoding=None,
        line_editor=False,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        reuse_address=True,
    )

"""A simulated device's SSH server: its listener, and the login it accepts (password, optionally from one
source address only).

Each accepted session is a `session.Session` on the device's `Endpoint`; the jump server's listener
(`jump`) is this one plus forwarding, and a device's published address (`routes`) opens and closes it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import asyncssh

from sftlab.shell.session import Endpoint, Session


class DeviceServer(asyncssh.SSHServer):
    """Password auth for the device's one login; optionally only from one source address."""

    def __init__(self, endpoint: Endpoint, only_from: str | None = None) -> None:
        self._endpoint = endpoint
        self._only_from = only_from
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._endpoint.connections.add(conn)
        peer = conn.get_extra_info("peername")
        if self._only_from is not None and (not peer or peer[0] != self._only_from):
            conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._endpoint.connections.discard(self._conn)

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

"""The jump server: a plain Linux host that forwards SSH (direct-tcpip, as ProxyJump uses) to the devices
it can reach, and nowhere else.

A device blocked on its direct route is still reachable from the management network; the lab models that with
a second, unpublished listener per device that accepts connections from the jump server's address only. The
jump server maps the address a client asks for (the device's published host and port, as in the inventory)
to that listener, and opens the connection from its own loopback address, as a real host on that network
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import asyncssh

from sftlab.shell.server import DeviceServer, listen
from sftlab.shell.session import Endpoint

log = logging.getLogger(__name__)

Address = tuple[str, int]
# Published (host, port) -> the device's jump-only listener, or None when the jump server has no route to it.
Routes = Callable[[], Mapping[Address, Address | None]]


class JumpServer(DeviceServer):
    """A DeviceServer (login, bash) that also forwards to reachable devices."""

    def __init__(self, endpoint: Endpoint, routes: Routes, source_ip: str) -> None:
        super().__init__(endpoint)
        self._routes = routes
        self._source_ip = source_ip

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Callable[[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]], asyncio.Future[None]] | bool:
        target = self._routes().get((dest_host, dest_port))
        if target is None:
            log.info("jump: refused forward to %s:%s (no route)", dest_host, dest_port)
            return False
        return lambda reader, writer: asyncio.ensure_future(self._pipe(target, reader, writer))

    async def _pipe(
        self, target: Address, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target, local_addr=(self._source_ip, 0))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer), return_exceptions=True)


async def _copy(
    reader: asyncio.StreamReader | asyncssh.SSHReader[bytes],
    writer: asyncio.StreamWriter | asyncssh.SSHWriter[bytes],
) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
        if isinstance(writer, asyncio.StreamWriter):
            writer.close()


async def listen_jump(
    endpoint: Endpoint, host: str, host_key: asyncssh.SSHKey, routes: Routes
) -> asyncssh.SSHAcceptor:
    """Start the jump server's SSH listener on `host`, a free port."""

    def factory() -> JumpServer:
        return JumpServer(endpoint, routes, host)

    return await listen(endpoint, host, 0, host_key, server_factory=factory)

"""A device's published SSH address, open, refusing or silently dropping, switchable while the lab runs.

`refuse` leaves nothing listening, so a client's connect fails at once (ECONNREFUSED). `drop` keeps a
listening socket whose accept queue is full and never drained: the kernel then drops further SYNs, so the
client's connect times out, as behind a firewall that drops. The port stays the same across switches, so the
inventory stays true when a test opens a route again.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import asyncssh

from sftlab.fleet.spec import Direct
from sftlab.shell.server import listen
from sftlab.shell.session import Endpoint

_FILLERS = 3


class FrontDoor:
    """The (host, port) the inventory publishes for a device."""

    def __init__(self, endpoint: Endpoint, host: str, host_key: Callable[[], asyncssh.SSHKey]) -> None:
        self._endpoint = endpoint
        self._host = host
        self._host_key = host_key
        self.port = 0
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self._blackhole: list[socket.socket] = []

    async def open(self, mode: Direct) -> None:
        """Bind the port (first call picks it) and apply `mode`."""
        if self.port == 0:
            with socket.socket() as probe:
                probe.bind((self._host, 0))
                self.port = probe.getsockname()[1]
        await self.set_mode(mode)

    async def set_mode(self, mode: Direct) -> None:
        await self.close()
        if mode == "open":
            self.acceptor = await listen(self._endpoint, self._host, self.port, self._host_key())
        elif mode == "drop":
            self._blackhole = _blackhole(self._host, self.port)

    async def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
            self.acceptor = None
        for sock in self._blackhole:
            sock.close()
        self._blackhole = []


def _blackhole(host: str, port: int) -> list[socket.socket]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(0)
    sockets = [listener]
    for _ in range(_FILLERS):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((host, port))
        sockets.append(filler)
    return sockets

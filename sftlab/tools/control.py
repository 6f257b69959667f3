"""The lab's control socket: how the Cisco tools inside a device's bash reach the lab's sftunnel daemons.

`sftunnel_status.pl`, `generate_certs.pl` and `pmtool` run as real programs in the device's real bash, but the
tunnels they report on, regenerate or restart live in the lab process. They talk to it over a Unix socket with
one request and one reply per connection (the format is `sftlab.tools.client`'s, the tools' side); the
socket's path reaches them in `SFTLAB_CONTROL`. This is the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from sftlab.tools.client import Reply, Request, encode_reply

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Reply]]

# sockaddr_un holds 108 bytes; a deep pytest tmp_path can exceed it.
_MAX_SOCKET_PATH = 100
_LIMIT = 16 * 1024 * 1024


def socket_path_for(lab_dir: Path) -> Path:
    """`lab_dir/control.sock`, or a short private folder in the temp dir when that path is too long."""
    path = lab_dir / "control.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="sftlab-")) / "control.sock"


class ControlServer:
    """Serves requests on a Unix socket until closed."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=_LIMIT)
        # The device shells may run as another uid (root in a user namespace maps back to us; an admin shell
        # might not); the folder's permissions are the boundary, so the socket itself is open.
        self.path.chmod(0o666)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = _request(await reader.readline())
            reply = await self._handler(request)
        except Exception as exc:
            log.exception("lab control request failed")
            reply = {"stdout": "", "stderr": f"lab: {type(exc).__name__}: {exc}\n", "code": 70}
        writer.write(encode_reply(reply))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _request(line: bytes) -> Request:
    request = json.loads(line)
    if not isinstance(request, dict):
        raise TypeError("request is not an object")
    return request

"""The tools' side of the lab's control socket (`sftlab.tools.control` is the server's): blocking, and light.

Every `pmtool`, `sftunnel_status.pl` and `generate_certs.pl` typed on a simulated device starts a Python
process that imports this, so it imports no asyncio (a third of a tool's start-up, and CPU the lab would
charge to the product on a shared machine: a real device runs its tools on its own CPU).
"""

from __future__ import annotations

import json
import socket
from typing import Any

Request = dict[str, Any]
Reply = dict[str, Any]


def call(path: str, request: Request, *, timeout: float = 600.0) -> Reply:
    """Send one request from a tool process and wait for the reply (blocking; tools are plain programs)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks))
    if not isinstance(reply, dict):
        raise TypeError("lab control reply is not an object")
    return reply

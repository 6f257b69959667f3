"""The tools' side of the lab's control socket (`sftlab.tools.control` is the server's): blocking, and lean.

Every `pmtool`, `sftunnel_status.pl` and `generate_certs.pl` typed on a simulated device starts a Python
process that imports this, and the lab's host pays for that start-up where a real device runs its tools on
its own CPU: at 300 FTDs the `pmtool` of each push was a fifth of the lab's CPU. So this module imports only
C modules (`_socket`, `_json`: no asyncio, no `socket`, `json`, `typing` or `pathlib`, which cost a tool
three times the interpreter's own start), and the wire format is one a tool reads without a parser:

- request: one JSON object of string (or null) values, then a newline;
- reply: a header line `<code> <stdout bytes> <stderr bytes>`, then the two texts, UTF-8.

The server reads a request with `json` (loaded in the lab process anyway) and writes its reply with
`encode_reply`, so the reply's format has one owner.
"""

from __future__ import annotations

import _json
import _socket

# Request and reply as the lab's handlers see them: `{"op": ..., "device": ..., ...}` and
# `{"stdout": str, "stderr": str, "code": int}`. Precise for the type checker only: importing `typing` costs
# a tool process more than all the rest of this module (mypy reads any `TYPE_CHECKING` as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Request = dict[str, Any]
    Reply = dict[str, Any]
else:
    Request = Reply = dict


def call(path: str, request: Request, *, timeout: float = 600.0) -> Reply:
    """Send one request from a tool process and wait for the reply (blocking; tools are plain programs)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(encode_request(request))
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    return decode_reply(b"".join(chunks))


def encode_request(request: Request) -> bytes:
    """One JSON line; values are strings or None (a tool's arguments), anything else is a TypeError."""
    fields = []
    for key, value in request.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"control request field {key!r} must be a string or None")
        encoded = "null" if value is None else _json.encode_basestring_ascii(value)
        fields.append(f"{_json.encode_basestring_ascii(str(key))}:{encoded}")
    return ("{" + ",".join(fields) + "}\n").encode("ascii")


def encode_reply(reply: Reply) -> bytes:
    """The server's reply: header line, then stdout and stderr."""
    out = str(reply.get("stdout", "")).encode("utf-8", "surrogateescape")
    err = str(reply.get("stderr", "")).encode("utf-8", "surrogateescape")
    return b"%d %d %d\n" % (int(reply.get("code", 0)), len(out), len(err)) + out + err


def decode_reply(data: bytes) -> Reply:
    """The tool's reading of `encode_reply`; ValueError for a reply cut short or malformed."""
    header, newline, body = data.partition(b"\n")
    parts = header.split()
    if not newline or len(parts) != 3:
        raise ValueError("lab control reply has no header line")
    code, out_len, err_len = (int(part) for part in parts)
    if len(body) != out_len + err_len:
        raise ValueError(f"lab control reply holds {len(body)} bytes, its header says {out_len + err_len}")
    return {
        "code": code,
        "stdout": body[:out_len].decode("utf-8", "replace"),
        "stderr": body[out_len:].decode("utf-8", "replace"),
    }

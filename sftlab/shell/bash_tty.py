"""Bash's side of the pty: the terminal settings, a line as bytes canonical mode passes intact, and the prompt
marker bash prints (``PS1``) split back out of its output.

The SSH side owns the client's terminal (:mod:`sftlab.shell.tty`): it echoes, edits lines and turns ``\\n``
into ``\\r\\n``; so the pty bash reads runs with ECHO and OPOST off, and with line editing characters
disabled (:func:`configure_tty`).

Lines are written in canonical mode, so a program bash starts reads the lines meant for it, as on a device.
Linux drops the end of a canonical line beyond 4095 bytes, so a longer line is cut into chunks separated by
VEOF (which hands a partial line to the reader without ending the input); control characters the tty would
act on (``^C``, ``^D``, ``^Z``, ``^\\``, ``^V``) are quoted with VLNEXT, so a line reaches bash byte for byte
(:func:`tty_bytes`).

Bash's ``PS1`` is a marker carrying ``$?`` and ``$PWD``, framed by ``\\x1e``/``\\x1f`` and a per-shell random
nonce that output cannot guess (:func:`prompt_env`); :class:`MarkerSplitter` takes it back out of the
output stream, wherever chunks cut it. ``PS2`` stays ``'> '`` and arrives as ordinary output. The marker is
``PS1``, printed as bash is about to read, and not a ``PROMPT_COMMAND``: bash runs that as a
non-interactive snippet, and a hang-up that lands while it finishes (right after the client saw the prompt)
would end bash without saving its history. Pure, but for the ioctls on a given descriptor.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from collections.abc import Mapping

from sftlab.shell.pathmap import overlap_len

VEOF = b"\x04"
_CHUNK = 1024  # bytes per canonical read, well below the 4095-byte line limit of n_tty
_QUOTED = frozenset(b"\x03\x04\x16\x1a\x1c")  # VINTR, VEOF, VLNEXT, VSUSP, VQUIT
_DISABLED_CC = ("VERASE", "VKILL", "VWERASE", "VREPRINT", "VDISCARD", "VEOL", "VEOL2")


def tty_bytes(line: str) -> bytes:
    """The bytes to write for one line: specials quoted with VLNEXT, VEOF every _CHUNK bytes, then ``\\n``."""
    data = line.encode()
    if _QUOTED.isdisjoint(data):  # the usual line (shell words, base64): cut into chunks, nothing to quote
        chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
        return VEOF.join(chunks) + b"\n"
    out = bytearray()
    size = 0
    for byte in data:
        token = bytes((0x16, byte)) if byte in _QUOTED else bytes((byte,))
        if size + len(token) > _CHUNK:
            out += VEOF
            size = 0
        out += token
        size += len(token)
    return bytes(out + b"\n")


def configure_tty(fd: int) -> None:
    """Canonical input with signals, no echo, no output processing, no editing characters, 80x24."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.IXOFF)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    attrs[3] |= termios.ICANON | termios.ISIG | termios.IEXTEN
    for name in _DISABLED_CC:
        attrs[6][getattr(termios, name)] = b"\x00"
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    set_size(fd, 80, 24)


def set_size(fd: int, cols: int, rows: int) -> None:
    """The terminal size programs on the pty see (they get SIGWINCH when it changes)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def prompt_env(env: Mapping[str, str], nonce: str) -> dict[str, str]:
    """``env`` and the prompt settings; no ``HIST*`` here, so bash keeps history as its defaults say."""
    return {
        **env,
        "PS0": "",
        "PS1": f"\\036SFTLAB{nonce}:$?:$PWD\\037",  # bash decodes the octal escapes, then expands $? and $PWD
        "PS2": "> ",
    }


class MarkerSplitter:
    """Splits a text stream into output and the payloads (``$?:$PWD``) of the markers :func:`prompt_env`'s
    ``PS1`` prints with ``nonce``; chunks may split a marker anywhere."""

    def __init__(self, nonce: str) -> None:
        self._head = f"\x1eSFTLAB{nonce}:"
        self._held = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """``(False, output)`` and ``(True, payload)`` items, in stream order."""
        text = self._held + text
        items: list[tuple[bool, str]] = []
        while (start := text.find(self._head)) >= 0:
            end = text.find("\x1f", start)
            if end < 0:
                break
            items += [(False, text[:start]), (True, text[start + len(self._head) : end])]
            text = text[end + 1 :]
        cut = text.find(self._head)
        cut = len(text) - overlap_len(text, self._head) if cut < 0 else cut
        items.append((False, text[:cut]))
        self._held = text[cut:]
        return [item for item in items if item[0] or item[1]]

    def flush(self) -> str:
        """What is held back, as plain output (the stream ended inside what looked like a marker)."""
        text, self._held = self._held, ""
        return text

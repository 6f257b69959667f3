"""The client's end of a device session: what it types, what it is shown, and how it goes away.

Bytes out pass the pty's line discipline (:mod:`sftlab.shell.tty`); bytes both ways count against the
device's `drop_after_bytes` knob, which cuts the connection as a network failure would. The client's input
becomes queued `Input`s. However the client side ends, an `EndOfInput` is queued that stays: EOF on a
channel still open is end of input (each shell level reads it in turn); a closed channel, a lost connection
or a drop by the knob is a hang-up (`hung_up`), which the session passes on to every shell level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal

import asyncssh

from sftlab.shell.tty import EndOfInput, Input, LineDiscipline

log = logging.getLogger(__name__)


class ConnectionDroppedError(Exception):
    """The device's `drop_after_bytes` knob cut the connection."""


class ClientChannel:
    """One session's SSH channel, as its client sees it; `drop_after_bytes` is read at every count (the knob
    may change while the session runs)."""

    def __init__(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        name: str,
        drop_after_bytes: Callable[[], int | None],
    ) -> None:
        self._process = process
        self._conn = process.channel.get_connection()
        self._name = name
        self._drop_after_bytes = drop_after_bytes
        self._ld = LineDiscipline(pty=process.get_terminal_type() is not None)
        self._inputs: asyncio.Queue[Input] = asyncio.Queue()
        self._pushed_back: Input | None = None
        self._client_gone: Literal["eof", "hang-up"] | None = None  # set when the client side has ended
        self._bytes = 0

    @property
    def hung_up(self) -> bool:
        """The client's side ended by a hang-up (not by EOF on a channel still open)."""
        return self._client_gone == "hang-up"

    @property
    def echo(self) -> bool:
        """Whether typed characters are echoed; off while a password is typed, as a device's pty has it."""
        return self._ld.echo

    @echo.setter
    def echo(self, on: bool) -> None:
        self._ld.echo = on

    @property
    def bytes_counted(self) -> int:
        """The channel bytes counted so far, both ways: what `drop_after_bytes` is compared with."""
        return self._bytes

    def abort(self) -> None:
        """Cut the connection as a network failure would."""
        self._conn.abort()

    def _count(self, n: int) -> int:
        """Count channel bytes; return how many of `n` may still pass before the drop knob cuts."""
        limit = self._drop_after_bytes()
        self._bytes += n
        if limit is None or self._bytes <= limit:
            return n
        return max(0, n - (self._bytes - limit))

    def write(self, text: str) -> None:
        """Show `text` to the client; ConnectionDroppedError when the drop knob cuts it."""
        data = self._ld.output(text)
        allowed = self._count(len(data))
        self._process.stdout.write(data[:allowed])
        if allowed < len(data):
            self.abort()
            raise ConnectionDroppedError(self._name)

    async def read_client(self) -> None:
        """Queue the client's input until its side ends; then queue an EndOfInput that stays.

        Input that arrived with the close still counts, as bytes sshd wrote to the pty before closing it do.
        """
        gone: Literal["eof", "hang-up"] = "hang-up"
        try:
            while True:
                data = await self._process.stdin.read(65536)
                if not data:
                    if not self._process.channel.is_closing():
                        gone = "eof"
                    return
                allowed = self._count(len(data))
                echo, inputs = self._ld.feed(data[:allowed])
                if echo:
                    with contextlib.suppress(BrokenPipeError):  # the channel is closing: nobody sees it
                        self._process.stdout.write(echo)
                if allowed < len(data):
                    self.abort()
                    return
                for item in inputs:
                    self._inputs.put_nowait(item)
        except (asyncssh.Error, OSError) as exc:
            log.debug("%s: the client's side ended: %s", self._name, exc)
        finally:
            self._client_gone = gone
            self._inputs.put_nowait(EndOfInput())

    async def next_input(self) -> Input:
        """The next input; once the client side has ended, EndOfInput for ever (every level reads it)."""
        if self._pushed_back is not None:
            item, self._pushed_back = self._pushed_back, None
            return item
        item = await self._inputs.get()
        if isinstance(item, EndOfInput) and self._client_gone is not None and self._inputs.empty():
            self._inputs.put_nowait(item)
        return item

    async def input_or(self, task: asyncio.Task[None]) -> Input | None:
        """The next client input, or None when `task` finishes first (the input then stays queued)."""
        if self._pushed_back is not None:
            return await self.next_input()
        get = asyncio.create_task(self.next_input())
        await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            if task.done():
                self._pushed_back = get.result()
                return None
            return get.result()
        get.cancel()
        return None

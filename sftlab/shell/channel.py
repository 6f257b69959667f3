"""The client's end of a device session: what it types, what it is shown, and how it goes away.

Bytes out pass the pty's line discipline (:mod:`sftlab.shell.tty`); bytes both ways count against the
device's `drop_after_bytes` knob, which cuts the connection as a network failure would. The client's input
becomes queued `Input`s. However the client side ends, an `EndOfInput` is queued that stays: EOF on a
channel still open is end of input (each shell level reads it in turn); a closed channel, a lost connection
or a drop by the knob is a hang-up (`hung_up`), which the session passes on to every shell level.

The `latency_ms` knob is a transit delay, as a network has it: each input is stamped with the time it
arrived and is handed to the shell no earlier than that time plus the latency. Lines sent in one write arrive
together and become available together (one delay for a here-document, not one per line); a client that waits
for each answer before sending the next line pays the delay for every line. Every input pays it (lines,
passwords, ^C, end of input and hang-up), and so does an exec request's command.

The channel also counts the session's command round trips (`sftlab.shell.usage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal

import asyncssh

from sftlab.shell.tty import EndOfInput, Input, LineDiscipline
from sftlab.shell.usage import SessionUsage

log = logging.getLogger(__name__)


class ConnectionDroppedError(Exception):
    """The device's `drop_after_bytes` knob cut the connection."""


#: An input and the event-loop time it arrived at the channel.
Stamped = tuple[float, Input]


class ClientChannel:
    """One session's SSH channel, as its client sees it; `drop_after_bytes` and `latency_ms` are read at
    every use (the knobs may change while the session runs)."""

    def __init__(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        name: str,
        drop_after_bytes: Callable[[], int | None],
        latency_ms: Callable[[], int] = lambda: 0,
        usage: SessionUsage | None = None,
    ) -> None:
        self._process = process
        self._conn = process.channel.get_connection()
        self._name = name
        self._drop_after_bytes = drop_after_bytes
        self._latency_ms = latency_ms
        self._usage = usage or SessionUsage("exec" if process.command is not None else "interactive", 0.0)
        self._ld = LineDiscipline(pty=process.get_terminal_type() is not None)
        self._inputs: asyncio.Queue[Stamped] = asyncio.Queue()
        self._pushed_back: Stamped | None = None
        self._client_gone: Literal["eof", "hang-up"] | None = None  # set when the client side has ended
        self._bytes = 0
        self._opened = asyncio.get_running_loop().time()
        # Whether the device has written output since the client last sent something: the client's next
        # input then starts a round trip. True at first: the first input (or exec request) is one.
        self._device_spoke = True

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

    @property
    def round_trips(self) -> int:
        """Command round trips so far (`sftlab.shell.usage`)."""
        return self._usage.round_trips

    def abort(self) -> None:
        """Cut the connection as a network failure would."""
        self._conn.abort()

    def _client_sent(self) -> None:
        if self._device_spoke:
            self._usage.round_trips += 1
            self._device_spoke = False

    async def exec_request(self) -> None:
        """An exec request's command: one round trip, available once it has crossed the network."""
        self._client_sent()
        await self._transit(self._opened)

    async def _transit(self, arrived: float) -> None:
        """Wait until `arrived` plus the latency knob (no wait when that has passed)."""
        latency = self._latency_ms()
        if latency:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(0.0, arrived + latency / 1000 - loop.time()))

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
        if data:
            self._device_spoke = True
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
                arrived = asyncio.get_running_loop().time()
                self._client_sent()
                allowed = self._count(len(data))
                echo, inputs = self._ld.feed(data[:allowed])
                if echo:
                    with contextlib.suppress(BrokenPipeError):  # the channel is closing: nobody sees it
                        self._process.stdout.write(echo)
                if allowed < len(data):
                    self.abort()
                    return
                for item in inputs:
                    self._inputs.put_nowait((arrived, item))
        except (asyncssh.Error, OSError) as exc:
            log.debug("%s: the client's side ended: %s", self._name, exc)
        finally:
            self._client_gone = gone
            self._inputs.put_nowait((asyncio.get_running_loop().time(), EndOfInput()))

    async def next_input(self) -> Input:
        """The next input, once its transit delay has passed; once the client side has ended, EndOfInput for
        ever (every level reads it). Cancelled while it waits, the input stays first in line."""
        if self._pushed_back is not None:
            stamped, self._pushed_back = self._pushed_back, None
        else:
            stamped = await self._inputs.get()
            if isinstance(stamped[1], EndOfInput) and self._client_gone is not None and self._inputs.empty():
                self._inputs.put_nowait(stamped)
        try:
            await self._transit(stamped[0])
        except asyncio.CancelledError:
            self._pushed_back = stamped
            raise
        return stamped[1]

    async def input_or(self, task: asyncio.Task[None]) -> Input | None:
        """The next client input, or None when `task` finishes first (the input then stays queued)."""
        get = asyncio.create_task(self.next_input())
        await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            if task.done():
                self._pushed_back = (0.0, get.result())  # it has already crossed the network
                return None
            return get.result()
        get.cancel()
        await asyncio.wait({get})  # a cancelled read pushes its input back: done before the next read
        return None

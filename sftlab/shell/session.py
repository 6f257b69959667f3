"""A session on a simulated device: the SSH login's landing, CLISH and the expert/root ladder over real bash.

`texts` decides what a line means and what a device prints; `bash` runs the real bash; `channel` is the
client's end (line discipline, the drop and latency knobs, end of input and hang-up, round trips counted). A
session carries lines from one to the other and applies the device's knobs (sudo variants, where a login
lands), which the fleet may change while the lab runs; `Endpoint` is what it knows of its device, and where
each session is counted (`usage`).

The end of a session is a device's too, because what a bash writes on its way out (its history) depends on
it: ``^D`` is end of input for the shell level that reads it; a closed channel or a lost connection is a
hang-up, which every shell level gets (SIGHUP, as when sshd closes the pty), even with lines still queued.
``sudo su`` is carried out here, not by bash, so the admin's bash is told to record the line as bash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncssh

from sftlab.fleet.spec import Knobs
from sftlab.shell import texts
from sftlab.shell.bash import BashShell, Exited, Output, Prompt
from sftlab.shell.channel import ClientChannel, ConnectionDroppedError
from sftlab.shell.pathmap import PathMap
from sftlab.shell.tty import EndOfInput, Input, Interrupt, Line
from sftlab.shell.usage import DeviceUsage, SessionUsage

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ClishStatus = Callable[[bool], Awaitable[str]]


@dataclass
class Endpoint:
    """Everything a session needs to know about the device it runs on; `knobs` may change at any time."""

    name: str
    face: texts.DeviceFace
    login_user: str
    password: str
    landing: Literal["clish", "bash"]
    home: str
    pathmap: PathMap
    host_path: Callable[[str], Path]
    bin_dirs: tuple[Path, ...]
    extra_env: Mapping[str, str]
    knobs: Knobs
    can_sudo: bool = True
    clish_status: ClishStatus | None = None
    sessions: set[Session] = field(default_factory=set)
    #: Every SSH connection still open, sessions or not (a login refused, a client that never asked for a
    #: shell): the fleet's stop aborts them, or their sockets would outlive the lab's event loop.
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    #: How many SSH password logins the device refused (a device with AAA lockout counts them too).
    refused_logins: int = 0
    #: Connections accepted and not yet authenticated: what sshd's `MaxStartups` counts (`server`).
    unauthenticated: int = 0
    #: Connections closed before the banner because `unauthenticated` was past `MaxStartups`.
    startups_dropped: int = 0
    #: Logins accepted, sessions opened and their round trips, since the lab started.
    usage: DeviceUsage = field(default_factory=DeviceUsage)


class HungUpError(Exception):
    """The client's side is gone (channel closed, connection lost): the session hangs up every shell."""


class Session:
    """One interactive (or exec) session on a device."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], endpoint: Endpoint) -> None:
        self._process = process
        self._ep = endpoint
        usage = SessionUsage("exec" if process.command is not None else "interactive", time.time())
        endpoint.usage.sessions.append(usage)
        self._client = ClientChannel(
            process,
            endpoint.name,
            lambda: endpoint.knobs.drop_after_bytes,
            lambda: endpoint.knobs.latency_ms,
            usage,
        )
        self._lectured = False
        self._shells: list[BashShell] = []
        self._ended = asyncio.Event()

    async def run(self) -> None:
        self._ep.sessions.add(self)
        reader = asyncio.create_task(self._client.read_client())
        status = 0
        try:
            if self._process.command is not None:
                status = await self._exec(self._process.command)
            else:
                await self._interactive()
        except (ConnectionDroppedError, HungUpError, BrokenPipeError, ConnectionError, asyncssh.Error):
            status = 255
        finally:
            reader.cancel()
            try:
                for bash in reversed(self._shells):
                    await bash.close()
            finally:
                self._ep.sessions.discard(self)
                self._ended.set()
                with contextlib.suppress(Exception):
                    self._process.exit(status)

    async def ended(self) -> None:
        """Return once the session has hung up its shells and their processes have died."""
        await self._ended.wait()

    def abort(self) -> None:
        """Cut the connection as a network failure would (used by the fleet)."""
        self._client.abort()

    @property
    def bytes_counted(self) -> int:
        """The session's channel bytes so far, as its `drop_after_bytes` knob counts them."""
        return self._client.bytes_counted

    # ------------------------------------------------------------------ levels

    async def _interactive(self) -> None:
        ep = self._ep
        if ep.knobs.last_login:
            peer = self._process.get_extra_info("peername")
            self._client.write(texts.last_login_line(datetime.now(UTC), peer[0] if peer else "127.0.0.1"))
        if ep.login_user == "admin":
            self._client.write(texts.banner(ep.face))
        if ep.landing == "bash" or ep.knobs.lands_in == "bash":
            await self._bash(ep.login_user, ep.home)
        else:
            await self._clish()

    async def _clish(self) -> None:
        while True:
            self._client.write(texts.CLISH_PROMPT)
            item = await self._client.next_input()
            if isinstance(item, EndOfInput):
                return
            if isinstance(item, Interrupt):
                continue
            if not await self._clish_line(item.text):
                return

    async def _clish_line(self, text: str) -> bool:
        """Carry out one CLISH line; False when the session should end."""
        action = texts.clish_action(text, self._ep.face.kind)
        if action is texts.Clish.EXIT:
            return False
        if action is texts.Clish.EXPERT:
            await self._bash("admin", self._ep.home)
        elif action is texts.Clish.SHOW_VERSION:
            self._client.write(texts.show_version(self._ep.face))
        elif action in (texts.Clish.TUNNEL_STATUS, texts.Clish.TUNNEL_STATUS_BRIEF) and self._ep.clish_status:
            self._client.write(await self._ep.clish_status(action is texts.Clish.TUNNEL_STATUS_BRIEF))
        elif action is not texts.Clish.NOTHING:
            self._client.write(texts.CLISH_UNKNOWN)
        return True

    def _env(self, user: str) -> dict[str, str]:
        ep = self._ep
        home = "/root" if user == "root" else ep.home
        path = ":".join([*(str(p) for p in ep.bin_dirs), SYSTEM_PATH])
        return {
            "HOME": str(ep.host_path(home)),
            "USER": user,
            "LOGNAME": user,
            "PATH": path,
            "TERM": self._process.get_terminal_type() or "dumb",
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
            "SFTLAB_LEVEL": "root" if user == "root" else "admin",
            **ep.extra_env,
        }

    def _host_cwd(self, cwd: str) -> Path:
        try:
            return self._ep.host_path(cwd)
        except ValueError:
            return Path(cwd)

    async def _start_bash(self, user: str, cwd: str, *, history: bool = True) -> BashShell:
        """A bash for `user`; its history goes to that user's `~/.bash_history` (HOME is the user's)."""
        bash = await BashShell.start(
            pathmap=self._ep.pathmap,
            cwd_host=self._host_cwd(cwd),
            env=self._env(user),
            user_ns_root=user == "root",
            history=history,
        )
        self._shells.append(bash)
        return bash

    async def _bash(self, user: str, cwd: str) -> None:
        """Run one bash level until it exits; `sudo su` from the admin level nests a root level."""
        bash = await self._start_bash(user, cwd)
        home = "/root" if user == "root" else self._ep.home
        pump = asyncio.create_task(self._pump(bash, user, home))
        try:
            while not pump.done():
                item = await self._client.input_or(pump)
                if item is None:
                    break
                await self._bash_input(bash, user, home, item)
            await pump
        finally:
            pump.cancel()
            await bash.close()
            self._shells.remove(bash)

    async def _bash_input(self, bash: BashShell, user: str, home: str, item: Input) -> None:
        if isinstance(item, Interrupt):
            bash.send_interrupt()
            return
        if isinstance(item, EndOfInput):
            if self._client.hung_up:
                raise HungUpError(self._ep.name)  # each level's `_bash` hangs its bash up on the way out
            await bash.send_eof()
            return
        request = texts.sudo_request(item.text) if user != "root" and bash.idle else None
        if request is not None and self._ep.can_sudo:
            # Bash records the line before sudo runs (and asks for the password, which bash never sees).
            await bash.record_history(item.text)
            await self._sudo(bash, request)
            self._client.write(texts.bash_prompt(user, self._ep.face.hostname, bash.cwd, home))
            return
        await bash.send_line(item.text)

    async def _pump(self, bash: BashShell, user: str, home: str) -> None:
        while True:
            event = await bash.next_event()
            if isinstance(event, Output):
                self._client.write(event.text)
            elif isinstance(event, Prompt):
                self._client.write(texts.bash_prompt(user, self._ep.face.hostname, event.cwd, home))
            elif isinstance(event, Exited):
                return

    async def _sudo(self, bash: BashShell, request: str) -> None:
        """`sudo su`: lecture and password as the device's sudo does them, then a root level."""
        ep = self._ep
        if ep.knobs.sudo == "lecture" and not self._lectured:
            self._client.write(texts.SUDO_LECTURE)
            self._lectured = True
        if ep.knobs.sudo != "cached" and not await self._sudo_password():
            return
        await self._bash("root", bash.cwd if request == "su" else "/root")

    async def _sudo_password(self) -> bool:
        for attempt in range(1, texts.SUDO_TRIES + 1):
            self._client.write(texts.PASSWORD_PROMPT)
            self._client.echo = False
            try:
                item = await self._client.next_input()
            finally:
                self._client.echo = True
            self._client.write("\n")
            if not isinstance(item, Line):
                return False
            if hmac.compare_digest(item.text.encode(), self._ep.password.encode()):
                return True
            self._client.write(texts.SUDO_RETRY if attempt < texts.SUDO_TRIES else texts.SUDO_GAVE_UP)
        return False

    async def _exec(self, command: str) -> int:
        """An exec request runs the line where a login would land, then ends with its status.

        In bash it is `bash -c`'s non-interactive run on a device, so nothing goes to the history file.
        """
        ep = self._ep
        await self._client.exec_request()
        if ep.landing == "clish" and ep.knobs.lands_in == "clish":
            action = texts.clish_action(command, ep.face.kind)
            await self._clish_line(command)
            return 1 if action is texts.Clish.UNKNOWN else 0
        bash = await self._start_bash(ep.login_user, ep.home, history=False)
        try:
            await self._until_prompt(bash)
            await bash.send_line(command)
            return await self._until_prompt(bash)
        finally:
            await bash.close()
            self._shells.remove(bash)

    async def _until_prompt(self, bash: BashShell) -> int:
        while True:
            event = await bash.next_event()
            if isinstance(event, Output):
                self._client.write(event.text)
            elif isinstance(event, Prompt):
                return event.status
            else:
                return event.code

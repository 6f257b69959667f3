"""A small expect-style SSH client over paramiko, the real client the lab tests drive the fleet with.

It is test code, not the product's device layer (that comes with its own tests): it logs in with host-key
checking against the lab's known_hosts, optionally through the jump server (direct-tcpip, as ProxyJump does),
and reads the shell's output until a pattern shows up or a deadline passes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paramiko

ROOT_PROMPT = re.compile(r"root@[\w.-]+:[^\n]*# $")
ADMIN_PROMPT = re.compile(r"admin@[\w.-]+:[^\n]*\$ $")
CLISH_PROMPT = re.compile(r"(?:^|\n)> $")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    username: str
    password: str


class Client(paramiko.SSHClient):
    """An SSHClient that keeps the jump-server connection it was tunnelled through alive."""

    jump: paramiko.SSHClient | None = None

    def close(self) -> None:
        super().close()
        if self.jump is not None:
            self.jump.close()


def open_client(
    target: Target, known_hosts: Path, *, via: Target | None = None, timeout: float = 10.0
) -> Client:
    """Connect with RejectPolicy against `known_hosts`; `via` is a jump server to tunnel through."""
    sock: paramiko.Channel | None = None
    jump: Client | None = None
    if via is not None:
        jump = open_client(via, known_hosts, timeout=timeout)
        transport = jump.get_transport()
        assert transport is not None
        sock = transport.open_channel(
            "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    client = Client()
    client.jump = jump
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        target.host,
        target.port,
        username=target.username,
        password=target.password,
        sock=sock,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


class Shell:
    """An interactive shell with a pty, read until a pattern matches."""

    def __init__(self, client: paramiko.SSHClient, *, pty: bool = True) -> None:
        self.client = client
        if pty:
            self.channel = client.invoke_shell(width=200)
        else:
            transport = client.get_transport()
            assert transport is not None
            self.channel = transport.open_session()
            self.channel.invoke_shell()
        self.transcript = ""
        self._seen = 0

    def expect(self, pattern: re.Pattern[str] | str, timeout: float = 15.0) -> str:
        """Wait for `pattern` in the output not yet consumed; return that output up to the match's end."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.transcript, self._seen)
            if match:
                out = self.transcript[self._seen : match.end()]
                self._seen = match.end()
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{regex.pattern!r} not seen; unread output: {self.transcript[self._seen :]!r}"
                )
            self._fill(deadline - time.monotonic())

    def _fill(self, timeout: float) -> None:
        self.channel.settimeout(max(0.05, min(timeout, 1.0)))
        try:
            data = self.channel.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise EOFError(f"channel closed; unread output: {self.transcript[self._seen :]!r}")
        self.transcript += data.decode("utf-8", errors="replace").replace("\r\n", "\n")

    def send(self, line: str) -> None:
        self.channel.sendall((line + "\n").encode())

    def run(self, line: str, prompt: re.Pattern[str] = ROOT_PROMPT, timeout: float = 30.0) -> str:
        """Send a command line and return its output (echo and prompt stripped)."""
        self.send(line)
        out = self.expect(prompt, timeout)
        body = out.split("\n", 1)[1] if "\n" in out else ""
        return body[: body.rfind("\n") + 1] if "\n" in body else ""

    def climb_to_root(self, password: str, *, from_clish: bool = True) -> None:
        if from_clish:
            self.expect(CLISH_PROMPT)
            self.send("expert")
        self.expect(ADMIN_PROMPT)
        self.send("sudo su")
        self.expect("Password:")
        self.send(password)
        self.expect(ROOT_PROMPT)

    def close(self) -> None:
        self.channel.close()
        self.client.close()

    def __enter__(self) -> Shell:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

"""The one small interface every step talks to a device through.

A session is a root shell on one FMC or FTD (reached directly or through a jump server), already past the
CLISH -> expert -> sudo ladder. Steps never see Fabric, paramiko or prompts: they run commands and move
files. `pipeline.devices.fabric_session` is the real implementation; a test double, where one is truly
needed, implements this Protocol and says what it replaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

RouteKind = Literal["direct", "jump"]

#: Where an interrupted `write_files_atomic` may have left its temporary files (next to the target); any
#: later session may delete them.
TEMP_GLOB = ".*.sftrenew-*.tmp*"


@dataclass(frozen=True)
class Route:
    """How a session reaches its device: directly, or through the named jump server (ProxyJump)."""

    kind: RouteKind
    jump: str | None = None

    def __str__(self) -> str:
        return "direct" if self.kind == "direct" else f"via {self.jump}"

    @classmethod
    def parse(cls, text: str) -> Route:
        """The route `str(route)` printed (`direct`, `via jump-1`); ValueError for anything else."""
        if text == "direct":
            return cls("direct")
        jump = text.removeprefix("via ")
        if jump == text or not jump or " " in jump:
            raise ValueError(f"not a route: {text!r} (expected 'direct' or 'via <jump server>')")
        return cls("jump", jump)


DIRECT = Route("direct")


@dataclass(frozen=True)
class CommandResult:
    """What one command printed and how it ended. stdout and stderr arrive merged on a pty."""

    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class Answer:
    """A reply to a question a command asks on its terminal, e.g. generate_certs.pl's `[yes/no]:`.

    `prompt` is a regular expression searched in the command's output not yet answered; each answer is used
    once, in order.
    """

    prompt: str
    reply: str


class DeviceSession(Protocol):
    """A root shell on one device."""

    @property
    def device(self) -> str:
        """The inventory name of the device."""
        ...

    @property
    def route(self) -> Route: ...

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        answers: Sequence[Answer] = (),
    ) -> CommandResult:
        """Run one shell command line as root, answering its questions in order; raise CommandFailedError
        on a non-zero exit when `check`, DeviceUnreachableError when the connection is lost."""
        ...

    def read_file(self, path: str) -> bytes:
        """The exact bytes of a file on the device."""
        ...

    def write_files_atomic(
        self, files: Mapping[str, bytes], *, mode: int = 0o644, owner: str = "root:root"
    ) -> None:
        """Replace each path (absolute) so that it holds either its old bytes or exactly its new ones, never
        anything else: temporary files next to the targets, checked by SHA-256 on the device, mode and owner
        set, renamed over the targets only once all checked out, then the targets' SHA-256 read back. One
        command round trip for the whole set."""
        ...

    def close(self) -> None: ...

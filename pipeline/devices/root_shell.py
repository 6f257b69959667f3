"""A root shell over an interactive terminal, whatever carries its bytes: the climb, commands and files.

After login the session climbs CLISH -> expert -> root with the pure decisions of `shells`, then runs each
command framed by markers carrying a fresh nonce (`framing`), so it never depends on the device's prompt.
Files travel as base64 in one command typed as short lines, checked by SHA-256 on both ends (`transfer`).
`RootShell` leaves the bytes to its subclass (`FabricSession`: paramiko), which also opens and closes.

Secrets: the password is typed without being logged; no password, file content or base64 chunk goes into a
log line or an exception. A write interrupted by a dropped connection leaves the target untouched and may
leave `.<name>.sftrenew-<nonce>.tmp[.b64]` next to it (`TEMP_GLOB`), safe to delete.

Secrets never reach a shell history or a process's arguments either. Bash records every line typed into it
and appends them to `~/.bash_history` when it exits or is hung up, where they outlive the session (a
`printf` line of a private key's base64 would sit in `/root/.bash_history`). So the first command at root
turns history off (`set +o history; unset HISTFILE`) and checks that bash agrees (`ROOT_CHECK`); a shell
that does not is abandoned with an UnexpectedShellError before anything else is typed. Bash adds a line to
its history as it reads it, so that first line (which holds no secret) may be recorded; none after it is.
Below root only `expert`, `sudo su` and `exit` are typed: the sudo password goes to sudo's `Password:` prompt
(`shells` sends it only there), which sudo reads with echo off, not bash. File data travels as arguments of
`printf`, a bash builtin: the pipeline's left side is a fork of bash that never execs, so no argument list
(`ps`, `/proc/<pid>/cmdline`, exec audit logs) ever holds it (`base64 -d` reads it from the pipe); the
other commands of a transfer name files, never their content.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

from pydantic import SecretStr

from pipeline.devices import framing, shells
from pipeline.devices.session import Answer, CommandResult, Route
from pipeline.devices.transfer import STAGES, TransferCheckError, WritePlan, check_read, read_command
from pipeline.errors import (
    AuthenticationFailedError,
    CommandFailedError,
    DeviceUnreachableError,
    UnexpectedShellError,
    WriteIntegrityError,
)
from pipeline.secrets import REDACTED
from pipeline.settings import SshSettings

# The session logs under one name, the one operators know, whichever half of it speaks.
log = logging.getLogger("pipeline.devices.fabric_session")

#: The first command at root, before anything secret is typed: history off, then who we are and whether bash
#: agrees that history is off. `shopt -qo history` exits 1 when it is off, 0 when on, and 127 in a shell
#: without `shopt`, so only a bash that really stopped recording passes (`history=1`). `PS2=` empties the
#: continuation prompt: a file write is typed as about 40 backslash-continued lines, and the `> ` bash
#: prints for each was 40 small packets from the device's sshd, and reads in the worker, in every push.
ROOT_CHECK = 'set +o history; unset HISTFILE; PS2=; echo "uid=$(id -u)"; shopt -qo history; echo "history=$?"'
_CHECKED = re.compile(r"^(uid|history)=(\S*)$", re.MULTILINE)


class RootShell(ABC):
    """The device side of a `DeviceSession`. Used by one thread at a time.

    A subclass sends and reads the terminal's bytes (`_send`, `_read`) and closes everything (`_abandon`);
    both I/O methods abandon the session and raise DeviceUnreachableError when the connection is lost.
    """

    def __init__(
        self,
        device: str,
        route: Route,
        ssh: SshSettings,
        *,
        username: str,
        sudo_password: SecretStr,
        passwords: Iterable[SecretStr],
    ) -> None:
        self._name = device
        self._route = route
        self._ssh = ssh
        self._username = username
        self._sudo_password = sudo_password
        self._secrets = [p.get_secret_value() for p in passwords if p]
        self._levels: tuple[shells.LevelName, ...] = ()

    @property
    def device(self) -> str:
        return self._name

    @property
    def route(self) -> Route:
        return self._route

    @abstractmethod
    def _send(self, data: bytes, label: str) -> None:
        """Send all of `data`; `label` names it in the DeviceUnreachableError if the connection is lost."""

    @abstractmethod
    def _read(self, deadline: float, label: str, *, on_timeout: float | None) -> str | None:
        """The next output (decoded); None at the deadline when `on_timeout` is None, else a
        DeviceUnreachableError naming `label` (the session is closed: its state is unknown)."""

    @abstractmethod
    def _abandon(self) -> None:
        """Close everything without a word (the shell's state is unknown, or it is already gone)."""

    # ------------------------------------------------------------ climbing

    def _climb(self) -> None:
        climb, seen = shells.Climb(), ""
        deadline = time.monotonic() + self._ssh.command_timeout
        while True:
            decision = shells.decide(climb, seen)
            action, climb = decision.action, decision.climb
            if isinstance(action, shells.Wait):
                chunk = self._read(deadline, "the shell prompt", on_timeout=None)
                if chunk is None:
                    self._climb_failed(shells.stalled(climb, seen))
                seen += chunk
                continue
            if isinstance(action, shells.Done):
                break
            if isinstance(action, shells.Fail):
                self._climb_failed(action)
            if isinstance(action, shells.SendPassword):
                self._type_password()
            else:
                self._type(action.line)
            log.debug("%s: %s", self.device, climb.phase.value)
            seen, deadline = "", time.monotonic() + self._ssh.command_timeout
        self._levels = climb.levels
        self._check_root(seen)
        log.debug("%s: root shell ready, history off (%s)", self.device, self._route)

    def _check_root(self, seen: str) -> None:
        """Run ROOT_CHECK; UnexpectedShellError (the session abandoned) unless uid 0 and history off."""
        checked = self._run(ROOT_CHECK, timeout=self._ssh.command_timeout, label="id -u; set +o history")
        facts = dict(_CHECKED.findall(checked.output))
        if facts.get("uid") != "0":
            shown = self._redact(shells.last_lines(seen))
            self._abandon()
            raise UnexpectedShellError(self.device, str(self._route), shown, "root (id -u = 0)")
        if facts.get("history") != "1":
            shown = (
                f"history still on after 'set +o history': {self._redact(shells.last_lines(checked.output))}"
            )
            self._abandon()
            raise UnexpectedShellError(self.device, str(self._route), shown, "root bash with history off")

    def _climb_failed(self, fail: shells.Fail) -> NoReturn:
        route, shown = str(self._route), self._redact(fail.shown)
        self._abandon()
        if fail.kind == "authentication":
            raise AuthenticationFailedError(self.device, route, f"{self._username} (sudo su)")
        if fail.kind == "no_prompt":
            self._unreachable(f"no {fail.expected} prompt within {self._ssh.command_timeout:g} s")
        raise UnexpectedShellError(self.device, route, shown, fail.expected)

    # ------------------------------------------------------------ commands

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        answers: Sequence[Answer] = (),
    ) -> CommandResult:
        """Run one command line as root; see `DeviceSession.run`. The output has `\\n` line ends.

        The command line is logged (redacted of passwords) and a failure's output tail goes into the error:
        never put file contents in a command (use `write_file_atomic`) or `cat` a key with `check=True`.
        """
        shown = self._redact(command)
        log.debug("%s: run %s", self.device, shown[:200])
        result = self._run(command, timeout=timeout or self._ssh.command_timeout, answers=answers)
        log.debug("%s: exit %d, %d characters of output", self.device, result.exit_code, len(result.output))
        if check and not result.ok:
            raise CommandFailedError(
                self.device, str(self._route), shown[:200], result.exit_code, self._redact(result.output)
            )
        return result

    def _run(
        self, command: str, *, timeout: float, answers: Sequence[Answer] = (), label: str = ""
    ) -> CommandResult:
        """Type one framed command and read until its end marker; `label` names it in errors (default: its
        first word). Lost connections and timeouts close the session and raise DeviceUnreachableError."""
        nonce = secrets.token_hex(8)
        framed = framing.FramedOutput(nonce, answers)
        label = label or (command.split(maxsplit=1)[0] if command.strip() else "(empty)")
        self._type(framing.frame(command, nonce), label)
        return self._collect(framed, timeout, label)

    def _collect(self, framed: framing.FramedOutput, timeout: float, label: str) -> CommandResult:
        """Read until the framed command's end marker, typing the answers it asks for."""
        deadline = time.monotonic() + timeout
        while framed.result is None:
            chunk = self._read(deadline, label, on_timeout=timeout)
            assert chunk is not None  # noqa: S101 - _read raises on timeout when on_timeout is set
            for reply in framed.feed(chunk):
                self._type(reply, label)
        return framed.result

    def _run_lines(self, lines: Sequence[str], *, timeout: float, label: str) -> CommandResult:
        """`_run` for one command typed as several lines (`framing.frame_lines`): one round trip."""
        nonce = secrets.token_hex(8)
        framed = framing.FramedOutput(nonce)
        self._send((framing.frame_lines(lines, nonce) + "\n").encode(), label)
        return self._collect(framed, timeout, label)

    # ------------------------------------------------------------ files

    def read_file(self, path: str) -> bytes:
        """The exact bytes of `path`, sent as base64 and checked against the device's `sha256sum`.

        A missing or unreadable file is a CommandFailedError (with sha256sum's complaint, never file data).
        """
        what = f"read {path}"
        result = self._run(read_command(path), timeout=self._ssh.command_timeout, label=what)
        if not result.ok:
            raise CommandFailedError(
                self.device, str(self._route), what, result.exit_code, self._redact(result.output)
            )
        try:
            received = check_read(result.output)
        except TransferCheckError as exc:
            raise CommandFailedError(self.device, str(self._route), what, 0, str(exc)) from None
        log.debug("%s: read %s (%d bytes, sha256 %s)", self.device, path, len(received.data), received.digest)
        return received.data

    def write_files_atomic(
        self, files: Mapping[str, bytes], *, mode: int = 0o644, owner: str = "root:root"
    ) -> None:
        """Replace each path with its bytes (see `DeviceSession.write_files_atomic`), in one command.

        Every line of it is built and checked before the first is sent (`transfer.WritePlan`); a failure the
        device reports names its stage and leaves no temp file; a lost connection may leave some
        (`TEMP_GLOB`).
        The command is never logged or shown: it holds the files' base64.
        """
        plan = WritePlan.build(files, mode, owner)
        what = ", ".join(plan.targets)
        log.debug("%s: write %s (%d bytes)", self.device, what, sum(len(d) for d in files.values()))
        result = self._run_lines(plan.lines, timeout=self._ssh.command_timeout, label=f"write {what}")
        if not result.ok:
            stage = plan.failed_stage(result.output)
            if stage == STAGES["check"]:  # garbled on the way: a rewrite may fix it
                raise WriteIntegrityError(self.device, str(self._route), what)
            tail = self._redact(result.output)[-300:]
            raise CommandFailedError(self.device, str(self._route), f"{stage} {what}", result.exit_code, tail)
        try:
            plan.check_written(result.output)
        except TransferCheckError:
            raise WriteIntegrityError(self.device, str(self._route), what) from None

    # ------------------------------------------------------------ typing and errors

    def _type(self, line: str, label: str = "") -> None:
        self._send((line + "\n").encode(), label or line)

    def _type_password(self) -> None:
        self._send((self._sudo_password.get_secret_value() + "\n").encode(), "the sudo password")

    def _unreachable(self, reason: str) -> NoReturn:
        raise DeviceUnreachableError(self.device, str(self._route), reason)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, REDACTED)
        return text

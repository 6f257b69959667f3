"""The error tree of sftrenew, named for the operator's next move.

Every class says on itself whether a retry can help (`retryable`), so tasks need one `autoretry_for` and the
store records `error_kind = type(exc).__name__`.

Two rules keep these safe to show, log, pickle and send through Celery's result backend:
- `args` are exactly the constructor's positional arguments, so `type(exc)(*exc.args)` rebuilds the error
  (that is how Celery turns a stored failure back into an exception) and `pickle` works without help;
- messages are built only from what the caller passes, and **callers pass redacted text**: never a password,
  a private key or a command line or output that may hold one (`SecretResolver.redact` strips known secrets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

#: How much of a command's (redacted) output a `CommandFailedError` keeps: the tail is where tools say why.
OUTPUT_TAIL_CHARS = 400

#: The setting that allows trust-on-first-use for unknown host keys (the settings module owns the switch).
TOFU_SWITCH = "SFTRENEW_TRUST_ON_FIRST_USE=1"  # pipeline.settings: ssh.trust_on_first_use


class SftrenewError(Exception):
    """Base of every error sftrenew raises on purpose; anything else is a bug."""

    retryable: ClassVar[bool] = False


class ConfigError(SftrenewError):
    """Settings, secrets or files around the inventory are wrong; the message names the file and the fix."""


@dataclass(frozen=True)
class InventoryProblem:
    """One problem found in an inventory: where it is (file, 1-based line, field path) and how to fix it."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = ":".join(part for part in (self.source, str(self.line or "")) if part)
        return f"{where}: {self.path}: {self.message}" if where else f"{self.path}: {self.message}"


class InventoryError(SftrenewError):
    """The inventory is not usable; every problem found is listed, so one run shows all of them."""

    def __init__(self, problems: Sequence[InventoryProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        sources = sorted({p.source for p in self.problems if p.source})
        head = f"{len(self.problems)} problems in {', '.join(sources) or 'the inventory'}:"
        return "\n  ".join([head, *(str(p) for p in self.problems)])


class DeviceError(SftrenewError):
    """Something went wrong on one device, reached over one route (`direct` or through a jump server)."""

    def __init__(self, device: str, route: str, *details: object) -> None:
        self.device = device
        self.route = route
        super().__init__(device, route, *details)

    def describe(self) -> str:
        """The part of the message after the device and route; subclasses say what failed and the fix."""
        return "device error"

    def __str__(self) -> str:
        return f"{self.device} (route {self.route}): {self.describe()}"


class DeviceUnreachableError(DeviceError):
    """No SSH session could be opened; a retry may work, and after the direct route, the jump route."""

    retryable: ClassVar[bool] = True

    def __init__(self, device: str, route: str, reason: str) -> None:
        self.reason = reason
        super().__init__(device, route, reason)

    def describe(self) -> str:
        return f"unreachable: {self.reason}; a retry may work (by its jump server too, if it has one)"


class AuthenticationFailedError(DeviceError):
    """The device refused the credential; retrying would only lock the account."""

    def __init__(self, device: str, route: str, username: str) -> None:
        self.username = username
        super().__init__(device, route, username)

    def describe(self) -> str:
        return (
            f"authentication failed for user '{self.username}'; check the credential the inventory names "
            "for this device and the password in its secrets file or environment variable"
        )


class HostKeyRejectedError(DeviceError):
    """The device's host key is unknown or changed; refused unless the operator opts in to TOFU."""

    def __init__(
        self, device: str, route: str, known_hosts: str, tofu_switch: str = TOFU_SWITCH, changed: bool = False
    ) -> None:
        self.known_hosts = known_hosts
        self.tofu_switch = tofu_switch
        self.changed = changed
        super().__init__(device, route, known_hosts, tofu_switch, changed)

    def describe(self) -> str:
        if self.changed:
            return (
                f"host key differs from the one in {self.known_hosts}: the device was reinstalled, or this "
                "is not the device; check the new key out of band, then replace its line in that file "
                "(trust-on-first-use never accepts a changed key)"
            )
        return (
            f"host key not in {self.known_hosts}; add the device's key to that file "
            f"(check it out of band first) or opt in to trust-on-first-use with {self.tofu_switch}"
        )


class CommandFailedError(DeviceError):
    """A command ran and failed; `output_tail` is the end of its output, already redacted by the caller."""

    def __init__(self, device: str, route: str, cmd: str, exit_code: int, output_tail: str) -> None:
        self.cmd = cmd
        self.exit_code = exit_code
        self.output_tail = output_tail[-OUTPUT_TAIL_CHARS:]
        super().__init__(device, route, cmd, exit_code, self.output_tail)

    def describe(self) -> str:
        tail = self.output_tail.strip() or "(no output)"
        return f"command '{self.cmd}' failed with exit code {self.exit_code}; output ends with: {tail}"


class UnexpectedShellError(DeviceError):
    """The session landed at a prompt the shell ladder does not know; nothing was run there."""

    def __init__(self, device: str, route: str, prompt: str, expected: str) -> None:
        self.prompt = prompt
        self.expected = expected
        super().__init__(device, route, prompt, expected)

    def describe(self) -> str:
        return (
            f"expected the {self.expected} shell but saw the prompt {self.prompt!r}; "
            "log in by hand to see where the device lands and report the prompt"
        )


class RenewalError(SftrenewError):
    """The renewal as a whole must stop; nothing device-level can fix it by retrying."""


class ForeignCAError(RenewalError):
    """The FMC holds a CA this renewal did not create: someone else regenerated it; stop, do not push."""

    def __init__(self, fmc: str, found_sha256: str, expected_sha256: str) -> None:
        self.fmc = fmc
        self.found_sha256 = found_sha256
        self.expected_sha256 = expected_sha256
        super().__init__(fmc, found_sha256, expected_sha256)

    def __str__(self) -> str:
        return (
            f"{self.fmc}: holds a CA (sha256 {self.found_sha256}) this renewal did not create (expected "
            f"the backed-up or the renewed CA, {self.expected_sha256}); stopped before pushing anything. "
            "Find out who regenerated the CA, then start a new renewal"
        )


class StrandedDevicesError(RenewalError):
    """Validation found devices the renewal would cut off; refused before anything changed."""

    def __init__(self, fmc: str, devices: Sequence[str], reason: str) -> None:
        self.fmc = fmc
        self.devices = tuple(devices)
        self.reason = reason
        super().__init__(fmc, self.devices, reason)

    def __str__(self) -> str:
        names = ", ".join(self.devices)
        return (
            f"{self.fmc}: renewal refused, nothing was changed: {len(self.devices)} device(s) would be "
            f"stranded ({names}): {self.reason}; make them reachable (directly or through their jump server) "
            "or take them out of the inventory, then run validate again"
        )

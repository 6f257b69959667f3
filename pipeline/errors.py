"""The error tree of sftrenew, named for the operator's next move.

Every class says on itself whether a retry can help (`retryable`), so tasks need one `autoretry_for`, and
what kind of failure it is (`kind`, an `ErrorKind`): the record stores `recorded_kind(exc)` in
`step_run.error_kind`. `ErrorKind` is the one place that names kinds: each member's value is the class name
the record has always stored, so old records, `sftrenew status` and the user guide read the same.

    SftrenewError                      (a base: never raised itself)
      ConfigError                      CONFIG            settings, secrets, files around the inventory
      InventoryError                   INVENTORY         the inventory, every problem listed
      DeviceError                      (a base)          one device, over one route
        HostKeyRejectedError           REFUSED_HOST_KEY  refused: host key unknown or changed
        AuthenticationFailedError      REFUSED_AUTH      refused: login or `sudo su`
        DeviceUnreachableError         UNREACHABLE       no session (retryable)
        PushRefusedError               (its cause's)     a push whose session never opened: the kind of
                                                         what refused it (REFUSED only if that is unknown)
        WriteIntegrityError            INTEGRITY         files read back differ after the write (retryable)
        CommandFailedError             TOOL_FAILED       a device tool or command failed
        UnexpectedShellError           UNEXPECTED_SHELL  a prompt the shell ladder does not know
        NoRouteError                   NO_ROUTE          every route of the device has been tried
        UnknownPeerError               UNKNOWN_PEER      the device's UUID is unknown
        NoMaterialError                NO_MATERIAL       the FMC made no certificate for the device
        BackupMismatchError            BACKUP_MISMATCH   restore refused: the copies on the device are
                                                         missing or not what the record says they held
      RenewalError                     (a base)          the renewal as a whole must stop
        ForeignCAError                 FOREIGN_CA        a CA this renewal did not create
        StrandedDevicesError           STRANDED          devices the renewal would cut off
        BadRecordError                 BAD_RECORD        a stored record does not read back
    anything else                      INTERNAL          a bug: recorded under its own class name

Two rules keep these safe to show, log, pickle and send through Celery's result backend:
- `args` are exactly the constructor's positional arguments, so `type(exc)(*exc.args)` rebuilds the error
  (that is how Celery turns a stored failure back into an exception) and `pickle` works without help;
- messages are built only from what the caller passes, and **callers pass redacted text**: never a password,
  a private key or a command line or output that may hold one (`SecretResolver.redact` strips known secrets).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

#: How much of a command's (redacted) output a `CommandFailedError` keeps: the tail is where tools say why.
OUTPUT_TAIL_CHARS = 400

#: The setting that allows trust-on-first-use for unknown host keys (the settings module owns the switch).
TOFU_SWITCH = "SFTRENEW_TRUST_ON_FIRST_USE=1"  # pipeline.settings: ssh.trust_on_first_use


class ErrorKind(enum.StrEnum):
    """What kind of failure an error is: the verdict `step_run.error_kind` stores (as the value).

    Each value is the name of the class that carries the member: the strings records have always held."""

    REFUSED_HOST_KEY = "HostKeyRejectedError"
    REFUSED_AUTH = "AuthenticationFailedError"
    #: A push refused before any write whose cause's kind is not known (rebuilt from an old result).
    REFUSED = "PushRefusedError"
    UNREACHABLE = "DeviceUnreachableError"
    INTEGRITY = "WriteIntegrityError"
    TOOL_FAILED = "CommandFailedError"
    UNEXPECTED_SHELL = "UnexpectedShellError"
    NO_ROUTE = "NoRouteError"
    UNKNOWN_PEER = "UnknownPeerError"
    NO_MATERIAL = "NoMaterialError"
    BACKUP_MISMATCH = "BackupMismatchError"
    FOREIGN_CA = "ForeignCAError"
    STRANDED = "StrandedDevicesError"
    BAD_RECORD = "BadRecordError"
    LATE_DELIVERY = "LateDeliveryError"
    CONFIG = "ConfigError"
    INVENTORY = "InventoryError"
    #: Not one of ours (a bug), or a base class raised itself: the record keeps the exception's class name.
    INTERNAL = "Exception"


class SftrenewError(Exception):
    """Base of every error sftrenew raises on purpose; anything else is a bug."""

    retryable: ClassVar[bool] = False
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL


class ConfigError(SftrenewError):
    """Settings, secrets or files around the inventory are wrong; the message names the file and the fix."""

    kind: ClassVar[ErrorKind] = ErrorKind.CONFIG


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

    kind: ClassVar[ErrorKind] = ErrorKind.INVENTORY

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

    #: A base: raised only through a subclass, which names its kind.
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL

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
    kind: ClassVar[ErrorKind] = ErrorKind.UNREACHABLE

    def __init__(self, device: str, route: str, reason: str) -> None:
        self.reason = reason
        super().__init__(device, route, reason)

    def describe(self) -> str:
        return f"unreachable: {self.reason}; a retry may work (by its jump server too, if it has one)"


class AuthenticationFailedError(DeviceError):
    """The device refused the credential (login or `sudo su`); retrying would only lock the account."""

    kind: ClassVar[ErrorKind] = ErrorKind.REFUSED_AUTH

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

    kind: ClassVar[ErrorKind] = ErrorKind.REFUSED_HOST_KEY

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

    kind: ClassVar[ErrorKind] = ErrorKind.TOOL_FAILED

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

    kind: ClassVar[ErrorKind] = ErrorKind.UNEXPECTED_SHELL

    def __init__(self, device: str, route: str, prompt: str, expected: str) -> None:
        self.prompt = prompt
        self.expected = expected
        super().__init__(device, route, prompt, expected)

    def describe(self) -> str:
        return (
            f"expected the {self.expected} shell but saw the prompt {self.prompt!r}; "
            "log in by hand to see where the device lands and report the prompt"
        )


class WriteIntegrityError(DeviceError):
    """The files read back after a write differ from the ones written: a rewrite may fix it."""

    retryable: ClassVar[bool] = True
    kind: ClassVar[ErrorKind] = ErrorKind.INTEGRITY

    def __init__(self, device: str, route: str, folder: str) -> None:
        self.folder = folder
        super().__init__(device, route, folder)

    def describe(self) -> str:
        return (
            f"the files written to {self.folder} did not check out by SHA-256 on the device; a retry writes "
            "them again; "
            "if it keeps failing, check the device's free disk space and that folder's owner and mode"
        )


class NoRouteError(DeviceError):
    """Every route of the device has been tried; only the operator can change that (then `sftrenew retry`)."""

    kind: ClassVar[ErrorKind] = ErrorKind.NO_ROUTE

    def __init__(self, device: str, route: str, reason: str) -> None:
        self.reason = reason
        super().__init__(device, route, reason)

    def describe(self) -> str:
        return f"{self.reason}; fix the route, then `sftrenew retry`"


class UnknownPeerError(DeviceError):
    """The device's UUID is unknown: validate could not reach it and the inventory does not name it."""

    kind: ClassVar[ErrorKind] = ErrorKind.UNKNOWN_PEER

    def describe(self) -> str:
        return (
            "UUID unknown (unreachable at validate, none in the inventory): add `uuid:` to the inventory "
            "and start a new renewal"
        )


class NoMaterialError(DeviceError):
    """The FMC made no certificate for this device: it has no peer folder there (not registered to it)."""

    kind: ClassVar[ErrorKind] = ErrorKind.NO_MATERIAL

    def describe(self) -> str:
        return "the FMC made no certificate for it (no /var/sf/peers/<uuid>/ there): is it registered there?"


class BackupMismatchError(DeviceError):
    """`sftrenew restore` refused before changing anything: the copies the push kept on the device are
    missing, or not what the record says they held (changed since). `problem` names each file and what was
    wrong, by SHA-256 only (never content)."""

    kind: ClassVar[ErrorKind] = ErrorKind.BACKUP_MISMATCH

    def __init__(self, device: str, route: str, folder: str, problem: str) -> None:
        self.folder = folder
        self.problem = problem
        super().__init__(device, route, folder, problem)

    def describe(self) -> str:
        return (
            f"restore refused, nothing was changed: {self.problem} in {self.folder}; the copies this "
            "renewal kept cannot be trusted: find out who changed or removed them, and put the files back "
            "by hand (docs/user-guide.md, restoring one device)"
        )


class PushRefusedError(DeviceError):
    """The attempt's session never opened (host key, authentication, sudo, unreachable): nothing on the device
    was touched. Carries what the session said (`cause_kind`, the `ErrorKind` value of the error that refused
    it, is what the record keeps as the error kind) and whether a retry can help (`cause_retryable`; the class
    itself is not retryable, so callers ask `can_retry`).

    Its message starts with "refused before any write:", and so does its repr, which is what Flower shows of a
    failed task: an operator sees at a glance that the device was left as it was. The arguments are plain
    strings and a bool, so Celery rebuilds it as `type(exc)(*exc.args)`."""

    kind: ClassVar[ErrorKind] = ErrorKind.REFUSED

    def __init__(
        self, device: str, route: str, cause_kind: str, cause: str, cause_retryable: bool = False
    ) -> None:
        self.cause_kind = cause_kind
        self.cause = cause
        self.cause_retryable = cause_retryable
        super().__init__(device, route, cause_kind, cause, cause_retryable)

    @classmethod
    def of(cls, exc: DeviceError) -> PushRefusedError:
        """From the error `SessionFactory.open` raised (its text is redacted, like every DeviceError's)."""
        return cls(exc.device, exc.route, recorded_kind(exc), exc.describe(), exc.retryable)

    def describe(self) -> str:
        return f"refused before any write: {self.cause}"

    def __str__(self) -> str:
        return f"refused before any write: {self.device} (route {self.route}): {self.cause}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def can_retry(exc: SftrenewError) -> bool:
    """Whether another attempt may succeed: a refusal is as retryable as what refused it."""
    return exc.cause_retryable if isinstance(exc, PushRefusedError) else exc.retryable


class RenewalError(SftrenewError):
    """The renewal as a whole must stop; nothing device-level can fix it by retrying."""

    #: A base: raised only through a subclass, which names its kind.
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL


class ForeignCAError(RenewalError):
    """The FMC holds a CA this renewal did not create: someone else regenerated it; stop, do not push."""

    kind: ClassVar[ErrorKind] = ErrorKind.FOREIGN_CA

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

    kind: ClassVar[ErrorKind] = ErrorKind.STRANDED

    def __init__(self, fmc: str, devices: Sequence[str], reason: str) -> None:
        self.fmc = fmc
        self.devices = tuple(devices)
        self.reason = reason
        super().__init__(fmc, self.devices, reason)

    def __str__(self) -> str:
        names = ", ".join(self.devices)
        return (
            f"{self.fmc}: renewal refused, nothing was changed: {len(self.devices)} device(s) would be "
            f"stranded ({names}): {self.reason}; make them reachable (directly or through their jump "
            "server), or enqueue again accepting each (--accept-stranded NAME)"
        )


class BadRecordError(RenewalError):
    """A record this renewal stored for a later step does not read back as its type: written by another
    version of sftrenew, or edited by hand. The message names the renewal, the FMC, the artifact and where the
    document is wrong (field paths and what was expected, never the stored values)."""

    kind: ClassVar[ErrorKind] = ErrorKind.BAD_RECORD

    def __init__(self, renewal_id: str, fmc: str, artifact: str, problem: str) -> None:
        self.renewal_id = renewal_id
        self.fmc = fmc
        self.artifact = artifact
        self.problem = problem
        super().__init__(renewal_id, fmc, artifact, problem)

    def __str__(self) -> str:
        return (
            f"renewal {self.renewal_id}, {self.fmc}: the stored {self.artifact} does not read back "
            f"({self.problem}); it was written by another version of sftrenew or edited by hand: "
            "start a new renewal of the pair"
        )


class LateDeliveryError(SftrenewError):
    """A push message delivered when its renewal cannot take it (abandoned, or ended with the push open):
    nothing was done to the device. It fails, with the reason and what to do, rather than report a success
    for a device nobody checked."""

    kind: ClassVar[ErrorKind] = ErrorKind.LATE_DELIVERY

    def __init__(self, renewal_id: str, fmc: str, device: str, reason: str) -> None:
        self.renewal_id = renewal_id
        self.fmc = fmc
        self.device = device
        self.reason = reason
        super().__init__(renewal_id, fmc, device, reason)

    def __str__(self) -> str:
        return f"renewal {self.renewal_id}: push to {self.device} for {self.fmc} not done: {self.reason}"


def kind_of(exc: BaseException) -> ErrorKind:
    """The kind of any exception: its class's, the refusing error's for a refused push, INTERNAL for a bug."""
    if isinstance(exc, PushRefusedError):
        return _kind_named(exc.cause_kind) or PushRefusedError.kind
    if isinstance(exc, SftrenewError):
        return exc.kind
    return ErrorKind.INTERNAL


#: The kinds of a refused login: the device refused our credential, or we refused its host key.
REFUSAL_KINDS = frozenset({ErrorKind.REFUSED_AUTH, ErrorKind.REFUSED_HOST_KEY})


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` is a refused login (authentication or host key): trying the device again in the same
    renewal, by another route or step, only adds a refused login (with AAA lockout, locks the account)."""
    return kind_of(exc) in REFUSAL_KINDS


def recorded_kind(exc: BaseException) -> str:
    """What `step_run.error_kind` stores for `exc`: its kind's value; for a refused push, the refusing error's
    (as `PushRefusedError.of` recorded it); for an INTERNAL one (a bug), the exception's own class name, so
    the worker log's traceback is easy to find."""
    if isinstance(exc, PushRefusedError):
        return exc.cause_kind
    kind = kind_of(exc)
    return type(exc).__name__ if kind is ErrorKind.INTERNAL else kind.value


def _kind_named(value: str) -> ErrorKind | None:
    try:
        kind = ErrorKind(value)
    except ValueError:
        return None
    return None if kind is ErrorKind.INTERNAL else kind

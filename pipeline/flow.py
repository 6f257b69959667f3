"""What happens next in a renewal: its recorded state in, a decision out.

The one owner of the flow. Pure: no I/O, no Celery, no database (import-linter forbids this module celery,
sqlmodel, sqlalchemy, fabric and paramiko), so every decision is a row of a table test
(`tests/unit/test_flow.py`). Its inputs are its own frozen dataclasses, not the store's rows: the runners
read what they recorded, convert it, ask, and do what they are told. Two runners execute these decisions: the
Celery tasks (`tasks/`: signatures, `apply_async`, the store) and the in-process runner
(`pipeline.steps.pair`, `python -m pipeline.steps`).

The decisions:
- `after_fmc`: after an FMC finished (or at enqueue): start the next pending FMC, wait for a running one,
  stop on a failed one, or finish the renewal (succeeded, or partial when some FMC did not verify).
- `resume`: the reconciler's decision for a stalled renewal (its messages were lost): which piece to send
  again, from what was recorded. Every task is idempotent, so sending one again is safe.
- `push_delivery`: what a delivered push message does (attempt, reopen its device for another round, or fail
  with a reason): a duplicate, a redelivery or Flower's re-apply never reports an unchecked success.
- `begin_push`, `next_attempt`, `attempt_failed_state`: one push attempt, and after a failed one, the next
  (its route and its delay) or giving up; one `RetryPolicy` for both runners.
- `after_control_error`: an FMC step (backup, validate, regenerate, verify) that failed: retry, or fail the
  FMC.
- `after_settle`, `after_verify`: the fan-in of a push round, and what a verify makes of its FMC.
- `retry_devices`: which devices `sftrenew retry` pushes again, per FMC, in which round.
- `login_refused`: whether a push or verify logs in to a device at all: not to one that refused a login
  earlier in the renewal (its credential or host key), until `sftrenew retry` opens a new round.
- `takes_step`, `superseded`: the record tells the truth: a message for a finished renewal runs no step, and
  a resend closes the attempts it takes over as interrupted.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Self, TypeAlias

from pipeline.devices.session import Route
from pipeline.errors import REFUSAL_KINDS as _REFUSAL_KINDS

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: The store's vocabulary, spelled here so that this module needs no database import (a unit test checks
#: that they match `pipeline.store`'s).
FmcState = Literal["pending", "running", "succeeded", "failed", "partial"]
StepState = Literal[
    "started", "succeeded", "failed", "skipped", "retrying", "refused", "ignored", "interrupted"
]
ControlStep = Literal["backup", "validate", "regenerate"]
SlotOutcome = Literal["succeeded", "skipped", "failed"]

FMC_STATES: tuple[FmcState, ...] = ("pending", "running", "succeeded", "failed", "partial")
#: The FMC steps before the pushes, in order.
CONTROL_STEPS: tuple[ControlStep, ...] = ("backup", "validate", "regenerate")
#: Retries of an FMC step (backup, validate, regenerate, verify) when the FMC is unreachable.
CONTROL_RETRIES = 3
#: The last push attempt of a device ended in one of these: `sftrenew retry` offers it again.
GAVE_UP_STATES: tuple[StepState, ...] = ("failed", "refused")
#: A renewal in one of these ended: a step message for it (redelivered, or resent late) runs nothing.
FINISHED_RENEWAL_STATES = ("succeeded", "failed", "partial")


def takes_step(renewal_state: str) -> bool:
    """Whether a step message for a renewal in `renewal_state` runs its step: not once the renewal ended (a
    message redelivered after the end leaves the finished renewal untouched; `sftrenew retry` reopens a
    renewal before it sends anything)."""
    return renewal_state not in FINISHED_RENEWAL_STATES


# ------------------------------------------------------------------ the renewal's recorded state


@dataclass(frozen=True)
class FmcRecord:
    """One FMC of a renewal as recorded. `done`: its control steps recorded as succeeded on the FMC itself;
    `unsettled`: the devices whose push in its newest round (`push_round`, 0 for none) has not settled.
    `done` and `unsettled` matter only for a running FMC (the one `resume` looks at)."""

    name: str
    state: FmcState
    push_round: int = 0
    done: frozenset[ControlStep] = frozenset()
    unsettled: tuple[str, ...] = ()
    #: The renewal waits for a person's approval before any regeneration (`sftrenew enqueue --hold`).
    held: bool = False
    #: Someone paused the renewal (`sftrenew pause`): no push starts and verify waits until `sftrenew resume`.
    paused: bool = False


# ------------------------------------------------------------------ after an FMC: the next one, or the end


@dataclass(frozen=True)
class Start:
    """Start this pending FMC's canvas (the earlier ones ended well enough)."""

    fmc: str

    def __str__(self) -> str:
        return f"started {self.fmc}"


@dataclass(frozen=True)
class Wait:
    """This FMC is running: whoever finishes it asks again."""

    fmc: str

    def __str__(self) -> str:
        return f"waiting for {self.fmc}"


@dataclass(frozen=True)
class Stop:
    """This FMC failed for good (a step's error that retries do not fix): the renewal ends as failed, and the
    FMCs after it are not started."""

    fmc: str
    outcome: ClassVar[Literal["failed"]] = "failed"

    def __str__(self) -> str:
        return f"stopped: {self.fmc} failed"


@dataclass(frozen=True)
class Finish:
    """Every FMC ended: succeeded when every one verified, partial otherwise."""

    outcome: Literal["succeeded", "partial"]

    def __str__(self) -> str:
        return f"finished: {self.outcome}"


AfterFmc: TypeAlias = Start | Wait | Stop | Finish


def after_fmc(fmcs: Sequence[FmcRecord]) -> AfterFmc:
    """In renewal order (primary first): the first FMC that failed stops the renewal, a running one is
    waited for, a pending one is started; when every FMC ended, the renewal finishes."""
    for fmc in fmcs:
        if fmc.state == "failed":
            return Stop(fmc.name)
        if fmc.state == "running":
            return Wait(fmc.name)
        if fmc.state == "pending":
            return Start(fmc.name)
    return Finish("succeeded" if all(f.state == "succeeded" for f in fmcs) else "partial")


def after_verify(ok: bool) -> FmcState:
    """What a verify makes of its FMC: succeeded when every peer verified, partial otherwise (the renewal
    goes on to the next FMC either way: the operator retries the devices that did not verify)."""
    return "succeeded" if ok else "partial"


# ------------------------------------------------------------------ the reconciler: what to send again


@dataclass(frozen=True)
class SendControl:
    """Send the FMC's canvas again from its first control step not recorded as succeeded."""

    fmc: str
    start: ControlStep
    kind: ClassVar[str] = "control"


@dataclass(frozen=True)
class SendPushes:
    """Send again the pushes of the round's unsettled slots."""

    fmc: str
    devices: tuple[str, ...]
    round: int
    kind: ClassVar[str] = "pushes"


@dataclass(frozen=True)
class SendVerify:
    """Every push of the round settled: send its verify (again)."""

    fmc: str
    round: int
    kind: ClassVar[str] = "verify"


@dataclass(frozen=True)
class Advance:
    """No FMC is running: ask `after_fmc` (in the transaction that acts on it)."""

    kind: ClassVar[str] = "advance"


@dataclass(frozen=True)
class AwaitApproval:
    """The FMC's next step is its regeneration and the renewal is held for approval: nothing is sent until
    `sftrenew approve` (which sends the regeneration itself)."""

    fmc: str
    kind: ClassVar[str] = "nothing (awaiting approval)"


@dataclass(frozen=True)
class AwaitResume:
    """The FMC's next piece is a push or its verify and the renewal is paused: nothing is sent until
    `sftrenew resume` (which sends it)."""

    fmc: str
    kind: ClassVar[str] = "nothing (paused)"


Resume: TypeAlias = SendControl | SendPushes | SendVerify | Advance | AwaitApproval | AwaitResume


def resume(fmcs: Sequence[FmcRecord]) -> Resume:
    """The piece a stalled renewal waits for, from its record: for the first running FMC, its first control
    step not yet succeeded (a step that died mid-way runs again: backup and validate are harmless twice, the
    regeneration is claimed once), else the pushes of its round that have not settled, else its verify (a
    verify claimed but lost runs again: it only reads). No running FMC: advance. A renewal held for approval
    waits before its regeneration; a paused one before its pushes and verify."""
    running = next((f for f in fmcs if f.state == "running"), None)
    if running is None:
        return Advance()
    for step in CONTROL_STEPS:
        if step not in running.done:
            if step == "regenerate" and running.held:
                return AwaitApproval(running.name)
            return SendControl(running.name, step)
    if running.paused:
        return AwaitResume(running.name)
    if running.unsettled:
        return SendPushes(running.name, running.unsettled, running.push_round)
    return SendVerify(running.name, running.push_round)


@dataclass(frozen=True)
class Superseded:
    """The attempts a resend takes over: those of `steps` on `devices` (None: the FMC itself) of `fmc` that
    are still `started` died with their worker (the renewal stalled), and are closed as interrupted."""

    fmc: str
    steps: tuple[Literal["backup", "validate", "regenerate", "push", "verify"], ...]
    devices: tuple[str | None, ...] = (None,)


def superseded(decided: Resume) -> Superseded | None:
    """What a resend decided by `resume` takes over: the control steps it sends again, the pushes of the
    devices it sends again, or the verify; None for an advance or a wait for approval (no step is sent)."""
    match decided:
        case SendControl(fmc=fmc, start=start):
            return Superseded(fmc, CONTROL_STEPS[CONTROL_STEPS.index(start) :])
        case SendPushes(fmc=fmc, devices=devices):
            return Superseded(fmc, ("push",), devices)
        case SendVerify(fmc=fmc):
            return Superseded(fmc, ("verify",))
    return None


# ------------------------------------------------------------------ attempts: one policy for both runners


def _full_jitter() -> float:
    return secrets.randbelow(1001) / 1000


@dataclass(frozen=True)
class RetryPolicy:
    """How often the direct route is tried before the jump server, how many times an FMC step is retried,
    and the pause before a retry: exponential from `backoff_s`, capped at `backoff_max_s`, with jitter (half
    to all of the step, `jitter()` in [0, 1]) so that a fleet does not retry in step. `jitter` is injected so
    that a test can fix it."""

    direct_attempts: int = 2
    backoff_s: float = 1.0
    backoff_max_s: float = 120.0
    control_retries: int = CONTROL_RETRIES
    jitter: Callable[[], float] = _full_jitter

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """The policy the settings ask for (`SFTRENEW_PUSH_DIRECT_ATTEMPTS`, `SFTRENEW_RETRY_BACKOFF`,
        `SFTRENEW_RETRY_BACKOFF_MAX`)."""
        return cls(
            direct_attempts=settings.push_direct_attempts,
            backoff_s=settings.celery.retry_backoff,
            backoff_max_s=settings.celery.retry_backoff_max,
        )

    def delay_s(self, failed_attempt: int) -> float:
        """The pause after the 1-based `failed_attempt` failed."""
        step = min(self.backoff_max_s, self.backoff_s * 2.0 ** max(0, failed_attempt - 1))
        return float(step / 2 + step / 2 * min(1.0, max(0.0, self.jitter())))


def next_route(routes: Sequence[Route], attempt: int, *, direct_attempts: int) -> Route | None:
    """The route for the 1-based `attempt`: the first route `direct_attempts` times, then each later route
    once; None when every route has had its turn."""
    if not routes or attempt < 1:
        return None
    if attempt <= direct_attempts:
        return routes[0]
    later = attempt - direct_attempts
    return routes[later] if later < len(routes) else None


@dataclass(frozen=True)
class Attempt:
    """Make attempt `number` (1-based) by `route`, after `delay_s` seconds."""

    number: int
    route: Route
    delay_s: float = 0.0


@dataclass(frozen=True)
class GiveUp:
    """No attempt left: the push fails (and settles its slot as failed)."""

    reason: str


@dataclass(frozen=True)
class Reopen:
    """The push's slot settled as failed: this delivery (Flower's re-apply, a redelivered message) is a word
    to try the device again, as `sftrenew retry` is: it opens the FMC's next push round for the device
    (`retry_devices`) and pushes in it, so that a success is followed by that round's verify."""


@dataclass(frozen=True)
class NotDelivered:
    """The delivery does nothing to the device and fails with `reason` (never a success it did not check)."""

    reason: str


#: How a push message is taken: "attempt" (an attempt in its own round; for a slot that settled as succeeded
#: or skipped, a check that reads the device and, if its files are no longer the new ones, pushes again),
#: `Reopen`, or `NotDelivered`.
PushDelivery: TypeAlias = Literal["attempt"] | Reopen | NotDelivered


def push_delivery(*, renewal_ended: bool, abandoned: bool, settled: str | None) -> PushDelivery:
    """What a delivered push message does, from its renewal and its slot (`settled`: the slot's outcome, None
    while open). Every delivery either reads the device (and pushes when it must) or fails with a reason:
    a duplicate or a re-apply never reports success for a device it did not check."""
    if abandoned:
        return NotDelivered(
            "its renewal was abandoned, so nothing is pushed for it; `sftrenew enqueue` starts a new one"
        )
    if settled == "failed":
        return Reopen()
    if settled is None and renewal_ended:
        return NotDelivered(
            "its renewal ended with this push unsettled; `sftrenew retry ID --device NAME` pushes again"
        )
    return "attempt"


NO_ROUTE = "no route left to try"
NOT_RETRYABLE = "the error is not one a retry can fix"


def next_attempt(
    routes: Sequence[Route], attempt: int, error_retryable: bool, policy: RetryPolicy
) -> Attempt | GiveUp:
    """After `attempt` attempts (0: none yet; then `error_retryable` is ignored), the next one, or giving up:
    only an error a retry can fix is retried, and only while a route has a turn left (direct first, then each
    jump server once). The first attempt starts at once; a retry after `policy.delay_s`."""
    if attempt > 0 and not error_retryable:
        return GiveUp(NOT_RETRYABLE)
    route = next_route(routes, attempt + 1, direct_attempts=policy.direct_attempts)
    if route is None:
        return GiveUp(NO_ROUTE)
    return Attempt(attempt + 1, route, policy.delay_s(attempt) if attempt > 0 else 0.0)


def begin_push(routes: Sequence[Route], attempt: int, policy: RetryPolicy) -> Attempt | GiveUp:
    """At the start of the 1-based `attempt` of a push (a Celery retry is a new attempt, its countdown
    already waited): its route, or giving up when no route is left for it (the attempt is still recorded, as
    failed, so that `sftrenew retry` offers it)."""
    route = next_route(routes, attempt, direct_attempts=policy.direct_attempts)
    return GiveUp(NO_ROUTE) if route is None else Attempt(attempt, route)


def attempt_failed_state(decided: Attempt | GiveUp, *, refused: bool) -> StepState:
    """How a failed push attempt is recorded: retrying when another attempt follows; otherwise refused when
    its session never opened (nothing was written), else failed."""
    if isinstance(decided, Attempt):
        return "retrying"
    return "refused" if refused else "failed"


@dataclass(frozen=True)
class Retry:
    """Run the FMC step again after `delay_s` seconds."""

    delay_s: float


@dataclass(frozen=True)
class FailFmc:
    """The FMC step failed for good: the FMC fails (and `after_fmc` stops the renewal)."""

    reason: str


def after_control_error(attempt: int, error_retryable: bool, policy: RetryPolicy) -> Retry | FailFmc:
    """After the 1-based `attempt` of an FMC step failed: retry an error a retry can fix (the FMC was
    unreachable) up to `policy.control_retries` times, else fail the FMC."""
    if not error_retryable:
        return FailFmc(NOT_RETRYABLE)
    if attempt > policy.control_retries:
        return FailFmc(f"still failing after {policy.control_retries} retries")
    return Retry(policy.delay_s(attempt))


def control_failed_state(decided: Retry | FailFmc) -> StepState:
    """How a failed FMC step attempt is recorded: retrying when it will run again, else failed."""
    return "retrying" if isinstance(decided, Retry) else "failed"


def after_settle(last: bool, fmc: str, round_: int) -> SendVerify | None:
    """A push settled its slot: the one settle that left no slot of the round open (the database says which,
    once) sends the round's verify; every other push sends nothing."""
    return SendVerify(fmc, round_) if last else None


# ------------------------------------------------------------------ sftrenew retry


@dataclass(frozen=True)
class PushHistory:
    """What one FMC's pushes left: whether it regenerated (only then is there material to push again), its
    newest push round, and every device it pushed to with the state of its last push attempt (None: a slot
    whose push never started)."""

    fmc: str
    regenerated: bool
    push_round: int
    last: Mapping[str, StepState | None]


@dataclass(frozen=True)
class RetryRound:
    """Open `round` of the FMC for these devices and push to them again."""

    fmc: str
    round: int
    devices: tuple[str, ...]


@dataclass(frozen=True)
class UnknownDevices:
    """The operator named devices this renewal never pushed to: nothing is retried."""

    names: tuple[str, ...]
    known: tuple[str, ...]

    def __str__(self) -> str:
        known = ", ".join(self.known) or "none"
        return f"this renewal never pushed to {', '.join(self.names)} (it pushed to: {known})"


def retry_devices(
    history: Sequence[PushHistory], requested: Sequence[str]
) -> tuple[RetryRound, ...] | UnknownDevices:
    """Per FMC that regenerated, the devices whose last push attempt failed or was refused (only the
    `requested` ones when some are named), to push again in its next round; FMCs with none are left out.
    A named device no FMC of this renewal pushed to is an error that names it, not a silent no-op."""
    known = sorted({device for fmc in history for device in fmc.last})
    unknown = tuple(sorted({d for d in requested if d not in known}))
    if unknown:
        return UnknownDevices(unknown, tuple(known))
    plans = []
    for fmc in history:
        failed = sorted(
            d
            for d, state in fmc.last.items()
            if state in GAVE_UP_STATES and (not requested or d in requested)
        )
        if failed and fmc.regenerated:
            plans.append(RetryRound(fmc.fmc, fmc.push_round + 1, tuple(failed)))
    return tuple(plans)


# ------------------------------------------------------------------ refused logins: not asked twice

#: The `step_run.error_kind` values of a refused login (authentication, host key): trying again, by another
#: route or in a later step, only adds a refused login, and a device with AAA lockout locks the account.
REFUSAL_KINDS: tuple[str, ...] = tuple(sorted(k.value for k in _REFUSAL_KINDS))


@dataclass(frozen=True)
class Refused:
    """Do not log in: the device refused a login (`kind`) earlier in this renewal, `at` validate or at this
    round's push. The step records it as refused or unreachable, without a session; `sftrenew retry` (a new
    round) is the operator's word that it was fixed."""

    kind: str
    at: Literal["validate", "push"]


def login_refused(
    step: Literal["push", "verify"],
    round_: int,
    *,
    at_validate: str | None,
    push_this_round: str | None = None,
) -> Refused | None:
    """Whether a push or verify of push round `round_` must not log in to a device, from the error kinds
    recorded for it: the refusal validate stored (`at_validate`), and for verify the kind of a refused push
    in this round (`push_this_round`). Round 1 does not log in again to a device that refused validate; a
    verify does not log in to a device whose push this round was refused; a retry round's push does."""
    if step == "verify" and push_this_round is not None and push_this_round in REFUSAL_KINDS:
        return Refused(push_this_round, "push")
    if round_ == 1 and at_validate is not None and at_validate in REFUSAL_KINDS:
        return Refused(at_validate, "validate")
    return None

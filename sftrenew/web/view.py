"""What the renewal page shows, made from what `sftrenew status` reads (`sftrenew.reading`): pure.

Per FMC its control steps and CA before and after, and a grid with one cell per device: the cell's state
(`CellState`, shown as a word and a symbol as well as a colour, so the grid reads without colour), route,
attempts (each linked to its task in Flower), verdict and error. The device lines are `pipeline.report`'s,
the ones the terminal table prints; devices the plan names that no push reached yet are `waiting`.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline import report
from pipeline.store import RenewalEvent, RenewalFmc, StepRun
from sftrenew.reading import PlannedFmc, RenewalRead

#: Push states of an attempt still under way (or whose worker died, and that the reconciler sends again).
RUNNING_PUSH = frozenset({"started", "retrying", "interrupted", "ignored"})
#: Push states `sftrenew retry` picks up.
GAVE_UP_PUSH = frozenset({"failed", "refused"})
DONE_PUSH = frozenset({"succeeded", "skipped"})


class CellState(enum.Enum):
    """A device's state in the grid; the value is the word the cell shows."""

    WAITING = "waiting"
    PUSHING = "pushing"
    PUSHED = "pushed, verifying"
    VERIFIED = "verified"
    FAILED = "failed"
    RESTORED = "restored"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]

    @property
    def css(self) -> str:
        return self.name.lower()


_SYMBOLS = {
    CellState.WAITING: "○",
    CellState.PUSHING: "◔",
    CellState.PUSHED: "◑",
    CellState.VERIFIED: "✔",
    CellState.FAILED: "✖",
    CellState.RESTORED: "↶",
}


def classify(push: str, verdict: str, *, pushed_since_verify: bool) -> CellState:
    """The cell's state from the device's last push state and last verdict (`report.DeviceLine`), and
    whether that push started after the last verify (a retried device waits for its new verify: its old
    verdict no longer tells)."""
    if push in RUNNING_PUSH:
        return CellState.PUSHING
    if verdict == "restored":
        return CellState.RESTORED
    if verdict != "-" and not pushed_since_verify:
        return CellState.VERIFIED if verdict == "verified" else CellState.FAILED
    if push in GAVE_UP_PUSH:
        return CellState.FAILED
    if push in DONE_PUSH:
        return CellState.PUSHED
    return CellState.WAITING


@dataclass(frozen=True)
class Attempt:
    number: int
    state: str
    route: str
    started_utc: datetime
    #: The attempt's task in Flower; None when no task id was recorded.
    flower: str | None


@dataclass(frozen=True)
class Cell:
    fmc: str
    device: str
    state: CellState
    push: str
    route: str
    attempts: int
    verdict: str
    #: The error's kind, or a note on what a successful push did.
    error: str
    tries: tuple[Attempt, ...]
    #: `sftrenew retry --device` would push to it (its last push failed or was refused).
    retryable: bool


@dataclass(frozen=True)
class FmcView:
    fmc: str
    role: str
    state: str
    ca_before: str | None
    ca_after: str | None
    #: (step, state of its last attempt or "-") for backup, validate, regenerate, verify.
    steps: tuple[tuple[str, str], ...]
    cells: tuple[Cell, ...]

    @property
    def counts(self) -> list[tuple[CellState, int]]:
        counted = Counter(c.state for c in self.cells)
        return [(state, counted[state]) for state in CellState if counted[state]]


@dataclass(frozen=True)
class RenewalView:
    id: str
    pair: str
    state: str
    requested_by: str
    requested_utc: datetime
    finished_utc: datetime | None
    held: bool
    paused: bool
    fmcs: tuple[FmcView, ...]
    plans: tuple[PlannedFmc, ...]
    events: tuple[RenewalEvent, ...]

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def label(self) -> str:
        """The state as an operator reads it: awaiting approval and paused are said so."""
        if self.held:
            return "awaiting approval"
        return f"{self.state} (paused)" if self.paused else self.state

    @property
    def verified(self) -> int:
        return sum(1 for f in self.fmcs for c in f.cells if c.state is CellState.VERIFIED)

    @property
    def devices(self) -> int:
        return sum(len(f.cells) for f in self.fmcs)

    @property
    def retryable(self) -> bool:
        return any(c.retryable for f in self.fmcs for c in f.cells)


def renewal_view(seen: RenewalRead, plans: Sequence[PlannedFmc], flower_url: str) -> RenewalView:
    row = seen.renewal
    planned = {p.fmc: p for p in plans}
    return RenewalView(
        id=row.id,
        pair=row.pair,
        state=row.state,
        requested_by=row.requested_by,
        requested_utc=row.requested_at_utc,
        finished_utc=row.finished_at_utc,
        held=seen.held,
        paused=seen.paused,
        fmcs=tuple(
            fmc_view(fmc, seen.steps, seen.events, planned.get(fmc.fmc), flower_url) for fmc in seen.fmcs
        ),
        plans=tuple(plans),
        events=tuple(seen.events),
    )


def fmc_view(
    fmc: RenewalFmc,
    steps: Sequence[StepRun],
    events: Sequence[RenewalEvent],
    plan: PlannedFmc | None,
    flower_url: str,
) -> FmcView:
    mine = [s for s in steps if s.fmc == fmc.fmc]
    lines = report.restored_lines(report.device_lines(mine), mine, [e for e in events if e.fmc == fmc.fmc])
    cells = [_cell(fmc.fmc, line, mine, flower_url) for line in lines]
    seen = {line.device for line in lines}
    for peer in plan.peers if plan else ():
        if peer.name not in seen:
            cells.append(
                Cell(fmc.fmc, peer.name, CellState.WAITING, "-", peer.routes, 0, "-", "", (), retryable=False)
            )
    control = [(name, state or "-") for name, state in report.control_states(mine).items()]
    return FmcView(
        fmc=fmc.fmc,
        role=fmc.role,
        state=fmc.state,
        ca_before=fmc.ca_before_sha256,
        ca_after=fmc.ca_after_sha256,
        steps=tuple(control),
        cells=tuple(sorted(cells, key=lambda c: c.device)),
    )


def _cell(fmc: str, line: report.DeviceLine, steps: Sequence[StepRun], flower_url: str) -> Cell:
    pushes = sorted(
        (s for s in steps if s.step == "push" and s.device == line.device and s.state != "ignored"),
        key=lambda s: s.attempt,
    )
    verifies = [s.started_at_utc for s in steps if s.step == "verify" and s.device == line.device]
    since = bool(pushes) and (not verifies or pushes[-1].started_at_utc > max(verifies))
    tries = tuple(
        Attempt(
            number=s.attempt,
            state=s.state,
            route=s.route or "-",
            started_utc=s.started_at_utc,
            flower=f"{flower_url.rstrip('/')}/task/{s.task_id}" if s.task_id else None,
        )
        for s in pushes
    )
    return Cell(
        fmc=fmc,
        device=line.device,
        state=classify(line.push, line.verdict, pushed_since_verify=since),
        push=line.push,
        route=line.route,
        attempts=line.attempts,
        verdict=line.verdict,
        error=line.error or line.note,
        tries=tries,
        retryable=line.push in GAVE_UP_PUSH,
    )

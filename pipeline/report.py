"""What `sftrenew status` shows: a renewal's record turned into a per-FMC, per-device table (pure).

For each FMC: its control steps (backup, validate, regenerate, verify), then one line per device with the
state of its last push (route, attempts, error) and its verdict from the last verify. A push is `refused` when
its session never opened (nothing was written); like `failed`, it is done and `sftrenew retry` takes it up. A
push that succeeded by doing something other than write-and-restart (a restart only, finishing an attempt that
died between its write and its restart) says so in the last column. A device whose files `sftrenew restore`
put back, and that no push or verify touched since, shows `restored` as its verdict, with who restored it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pipeline.store import Renewal, RenewalEvent, RenewalFmc, StepRun

CONTROL = ("backup", "validate", "regenerate", "verify")
#: Push states with an error to show: it failed, was refused, or failed and will be tried again.
ERROR_STATES = ("failed", "retrying", "refused")
#: Push states that count as done in the progress: settled, whatever the outcome.
DONE_STATES = ("succeeded", "skipped", "failed", "refused")
#: Attempts that say nothing of their step's outcome: a duplicate that stood aside while another task ran the
#: step. Shown only when no other attempt exists.
NO_OUTCOME_STATES = ("ignored",)


@dataclass(frozen=True)
class DeviceLine:
    device: str
    push: str
    route: str
    attempts: int
    verdict: str
    error: str
    #: What a successful push did when it was not a plain write and restart (the push's recorded message).
    note: str = ""


def _last(steps: Sequence[StepRun], step: str, device: str | None) -> StepRun | None:
    """The attempt that says how the step stands: the newest one, passing over ignored duplicates (whose
    numbers may be higher than the real run's)."""
    runs = [s for s in steps if s.step == step and s.device == device]
    telling = [s for s in runs if s.state not in NO_OUTCOME_STATES] or runs
    return max(telling, key=lambda s: s.attempt) if telling else None


def control_states(steps: Sequence[StepRun]) -> dict[str, str | None]:
    """One FMC's control steps and the state each stands in (None: not run yet), from its attempts."""
    return {name: run.state if (run := _last(steps, name, None)) else None for name in CONTROL}


def device_lines(steps: Sequence[StepRun]) -> list[DeviceLine]:
    devices = sorted({s.device for s in steps if s.device is not None and s.step == "push"})
    lines = []
    for device in devices:
        push = _last(steps, "push", device)
        verdict = _last(steps, "verify", device)
        attempts = sum(
            1 for s in steps if s.step == "push" and s.device == device and s.state not in NO_OUTCOME_STATES
        )
        error = (push.error_kind or "") if push and push.state in ERROR_STATES else ""
        if verdict is not None and verdict.state == "failed":
            error = error or (verdict.error_kind or "")
        lines.append(
            DeviceLine(
                device=device,
                push=push.state if push else "-",
                route=(push.route or "-") if push else "-",
                attempts=attempts,
                verdict=("verified" if verdict.state == "succeeded" else (verdict.error_kind or "failed"))
                if verdict
                else "-",
                error=error,
                note=(push.message or "") if push and push.state == "succeeded" else "",
            )
        )
    return lines


def render(
    renewal: Renewal,
    fmcs: Sequence[RenewalFmc],
    steps: Sequence[StepRun],
    events: Sequence[RenewalEvent] = (),
) -> str:
    out = [
        f"renewal {renewal.id}  pair {renewal.pair}  state {renewal.state}  "
        f"requested by {renewal.requested_by} at {renewal.requested_at_utc:%Y-%m-%d %H:%M:%S} UTC"
    ]
    for fmc in fmcs:
        mine = [s for s in steps if s.fmc == fmc.fmc]
        control = "  ".join(f"{name}:{state or '-'}" for name, state in control_states(mine).items())
        before = (fmc.ca_before_sha256 or "-")[:12]
        after = (fmc.ca_after_sha256 or "-")[:12]
        out.append("")
        out.append(f"{fmc.role} {fmc.fmc}  [{fmc.state}]  CA {before} -> {after}  {control}")
        out.append(f"  {'device':<24} {'push':<10} {'route':<14} {'tries':>5}  {'verdict':<14} error or note")
        for line in restored_lines(device_lines(mine), mine, [e for e in events if e.fmc == fmc.fmc]):
            out.append(
                f"  {line.device:<24} {line.push:<10} {line.route:<14} {line.attempts:>5}  "
                f"{line.verdict:<14} {line.error or line.note}".rstrip()
            )
    if events:
        out.append("")
        out.append("events:")
        out.extend(f"  {event_line(e)}" for e in events)
    return "\n".join(out) + "\n"


def restored_lines(
    lines: Sequence[DeviceLine], steps: Sequence[StepRun], events: Sequence[RenewalEvent]
) -> list[DeviceLine]:
    """`lines` with the verdict `restored` for each device whose latest restore (of one FMC's steps and
    events) came after its latest push or verify: its files are the ones it held before the renewal."""
    out = []
    for line in lines:
        device = line.device
        restores = [e for e in events if e.action == "restore" and e.device == device]
        touched = [s.started_at_utc for s in steps if s.device == device and s.step in ("push", "verify")]
        last = restores[-1] if restores else None
        if last is not None and all(at <= last.at_utc for at in touched):
            note = f"restored by {last.who}" if last.who else "restored"
            out.append(replace(line, verdict="restored", error="", note=note))
        else:
            out.append(line)
    return out


def event_line(event: RenewalEvent) -> str:
    """One event in a line: when, what, on which FMC or device, by whom, and the detail."""
    where = " ".join(part for part in (event.fmc, event.device) if part)
    parts = [f"{event.at_utc:%Y-%m-%d %H:%M:%S}", event.action]
    if where:
        parts.append(where)
    if event.who:
        parts.append(f"by {event.who}")
    text = "  ".join(parts)
    return f"{text}: {event.detail}" if event.detail else text


def regenerated(fmcs: Sequence[RenewalFmc]) -> list[str]:
    """The FMCs whose CA this renewal regenerated, or may have (its intent to run generate_certs.pl was
    recorded): their peers are off the tunnel until they hold the new files."""
    return [f.fmc for f in fmcs if f.regen_intent_at_utc is not None or f.ca_after_sha256 is not None]


def not_verified(fmcs: Sequence[RenewalFmc], steps: Sequence[StepRun]) -> list[tuple[str, str]]:
    """(FMC, device) for each peer of a regenerated FMC that its last verify did not verify (or that no
    verify judged yet)."""
    missing = []
    for fmc in regenerated(fmcs):
        lines = device_lines([s for s in steps if s.fmc == fmc])
        missing += [(fmc, line.device) for line in lines if line.verdict != "verified"]
    return missing


def progress(
    fmcs: Sequence[RenewalFmc], steps: Sequence[StepRun], planned: Mapping[str, int] | None = None
) -> tuple[int, int]:
    """(done, total) units of work: four control steps per FMC plus one settled push per device. `planned`:
    per FMC, how many peers the plan at enqueue found, so the total is known from the start and does not
    grow as the pushes are recorded (a progress bar that goes backwards, 16/17 then 23/26, misleads)."""
    total = done = 0
    for fmc in fmcs:
        mine = [s for s in steps if s.fmc == fmc.fmc]
        total += len(CONTROL)
        done += sum(1 for name in CONTROL if (run := _last(mine, name, None)) and run.state == "succeeded")
        lines = device_lines(mine)
        total += max(len(lines), (planned or {}).get(fmc.fmc, 0))
        done += sum(1 for line in lines if line.push in DONE_STATES)
    return done, total


def progress_bar(done: int, total: int, width: int = 40) -> str:
    filled = int(width * done / total) if total else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


#: `status --json`'s and `history --json`'s shapes; a change that breaks a reader gets a new number.
STATUS_SCHEMA = "sftrenew.status/1"
HISTORY_SCHEMA = "sftrenew.history/1"


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def renewal_summary(renewal: Renewal) -> dict[str, object]:
    return {
        "id": renewal.id,
        "pair": renewal.pair,
        "state": renewal.state,
        "requested_by": renewal.requested_by,
        "requested_at": _when(renewal.requested_at_utc),
        "finished_at": _when(renewal.finished_at_utc),
    }


def status_document(
    renewal: Renewal,
    fmcs: Sequence[RenewalFmc],
    steps: Sequence[StepRun],
    events: Sequence[RenewalEvent],
    *,
    held: bool,
    paused: bool,
    planned: Mapping[str, int] | None = None,
) -> dict[str, object]:
    """What `status` shows, as a document (`STATUS_SCHEMA`): the same lines, verdicts and progress."""
    done, total = progress(fmcs, steps, planned)
    out_fmcs = []
    for fmc in fmcs:
        mine = [s for s in steps if s.fmc == fmc.fmc]
        lines = restored_lines(device_lines(mine), mine, [e for e in events if e.fmc == fmc.fmc])
        out_fmcs.append(
            {
                "fmc": fmc.fmc,
                "role": fmc.role,
                "state": fmc.state,
                "ca_before_sha256": fmc.ca_before_sha256,
                "ca_after_sha256": fmc.ca_after_sha256,
                "steps": control_states(mine),
                "devices": [
                    {
                        "device": line.device,
                        "push": line.push,
                        "route": line.route,
                        "attempts": line.attempts,
                        "verdict": line.verdict,
                        "error": line.error or None,
                        "note": line.note or None,
                    }
                    for line in lines
                ],
            }
        )
    return {
        "schema": STATUS_SCHEMA,
        "renewal": renewal_summary(renewal),
        "awaiting_approval": held,
        "paused": paused,
        "progress": {"done": done, "total": total},
        "fmcs": out_fmcs,
        "events": [
            {
                "at": _when(e.at_utc),
                "action": e.action,
                "who": e.who,
                "fmc": e.fmc,
                "device": e.device,
                "detail": e.detail,
                "line": event_line(e),
            }
            for e in events
        ],
    }


def history_document(renewals: Sequence[Renewal]) -> dict[str, object]:
    """What `history` lists, as a document (`HISTORY_SCHEMA`), newest first."""
    return {"schema": HISTORY_SCHEMA, "renewals": [renewal_summary(r) for r in renewals]}

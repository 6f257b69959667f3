"""What people are told, and when (pure): a renewal that waits for their approval, a renewal that ended
(and which devices it left off the new CA), a CA that is due. `tasks.notify` sends these through apprise.

A notice names the renewal and the next command, so whoever reads it on a phone knows what to do; it never
holds a secret (names, ids, counts and dates only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.monitoring import LEVELS, OK, CheckResult

Level = Literal["info", "success", "warning", "failure"]
#: How many devices a notice lists by name before it says "and N more" (a message, not a report).
LISTED = 20


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    level: Level


def notify_urls(raw: str) -> list[str]:
    """`SFTRENEW_NOTIFY`: apprise URLs separated by spaces, commas or newlines (as apprise's own CLI takes
    them); empty means nobody is told."""
    return [url for url in re.split(r"[\s,]+", raw.strip()) if url]


def awaiting_approval(renewal_id: str, pair: str, fmc: str) -> Notice:
    return Notice(
        title=f"sftrenew: renewal of {pair} awaits approval",
        body=(
            f"Renewal {renewal_id} of pair {pair} backed up and validated {fmc} and waits before "
            "regenerating its CA (the point of no return).\n"
            f"Look: sftrenew status {renewal_id}\n"
            f"Approve: sftrenew approve {renewal_id} --by NAME\n"
            f"Or end it: sftrenew abandon {renewal_id} --reason TEXT"
        ),
        level="info",
    )


def renewal_ended(renewal_id: str, pair: str, state: str, not_verified: Sequence[tuple[str, str]]) -> Notice:
    """The end of a renewal: succeeded, or partial / failed with each device its verify did not verify."""
    if state == "succeeded":
        return Notice(
            title=f"sftrenew: renewal of {pair} succeeded",
            body=f"Renewal {renewal_id} of pair {pair} succeeded: every device verified on the new CA.",
            level="success",
        )
    missing = (
        f"{len(not_verified)} device(s) not verified on the new CA (off the tunnel until fixed):\n"
        + _listed(not_verified)
        if not_verified
        else "No CA was regenerated: every device is still on its old CA."
    )
    return Notice(
        title=f"sftrenew: renewal of {pair} ended {state}",
        body=(
            f"Renewal {renewal_id} of pair {pair} ended {state}.\n{missing}\n"
            f"Look: sftrenew status {renewal_id}\n"
            + (f"Push again: sftrenew retry {renewal_id}" if not_verified else "")
        ).rstrip(),
        level="warning" if state == "partial" else "failure",
    )


def renewal_abandoned(
    renewal_id: str, pair: str, who: str, why: str, not_verified: Sequence[tuple[str, str]]
) -> Notice:
    """Someone ended a renewal by hand: who and why, and the devices it leaves off the new CA."""
    left = (
        f"{len(not_verified)} device(s) not on the new CA (off the tunnel until their files are copied):\n"
        + _listed(not_verified)
        if not_verified
        else "No device was left off a new CA."
    )
    return Notice(
        title=f"sftrenew: renewal of {pair} abandoned by {who}",
        body=f"Renewal {renewal_id} of pair {pair} was abandoned by {who}: {why}\n{left}",
        level="warning" if not not_verified else "failure",
    )


def _listed(devices: Sequence[tuple[str, str]]) -> str:
    """The first `LISTED` (FMC, device) pairs, one a line, and how many more."""
    lines = [f"  {fmc} -> {device}" for fmc, device in devices[:LISTED]]
    if len(devices) > LISTED:
        lines.append(f"  and {len(devices) - LISTED} more")
    return "\n".join(lines)


def cas_due(result: CheckResult) -> Notice | None:
    """A notice when some CA is within the warning window (or could not be read); None when all are OK."""
    if result.exit_code == OK:
        return None
    lines = [line for line in result.detail_lines() if not line.startswith("OK ")]
    word = LEVELS[result.exit_code]
    return Notice(
        title=f"sftrenew: InternalCA check {word}",
        body="\n".join(
            [*lines, "Plan a renewal: sftrenew plan --pair NAME, then sftrenew enqueue --pair NAME --hold"]
        ),
        level="failure" if word == "CRITICAL" else "warning",
    )

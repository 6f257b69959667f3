"""The operator's hand on a running renewal: approve a held one, pause and resume one, abandon one.

A renewal held at enqueue (`--hold`, or `SFTRENEW_REQUIRE_APPROVAL=true`) runs its backup and validate, then
waits before the first regeneration, the point of no return. `approve` plans again (read-only) and refuses
when the plan changed since enqueue (a device newly stranded, a route changed), showing the difference;
otherwise it records who approved which plan and sends the regeneration. `pause` lets the pushes running
finish and starts no new one (verify waits); `resume` sends what waits. `abandon` ends a renewal and frees
its pair: before any regeneration, cleanly; after one, only with `--force`, and it lists every device that is
not verified on the new CA.


The acts themselves are `sftrenew.actions` (the renewal page calls the same functions); these handlers parse
the arguments and print the outcome.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.settings import Settings
from sftrenew import actions
from sftrenew.operators import operator_name
from sftrenew.renewals import EXIT_REFUSED

Sub = Any


def add_commands(sub: Sub) -> None:
    approve = sub.add_parser("approve", help="let a held renewal regenerate, after planning again")
    approve.add_argument("renewal", help="renewal id")
    approve.add_argument("--by", help="who approves (default: SFTRENEW_OPERATOR, else the login name)")
    approve.set_defaults(run=_approve)

    pause = sub.add_parser("pause", help="no new device push starts (running ones finish); verify waits")
    pause.add_argument("renewal", help="renewal id")
    pause.add_argument("--reason", help="why (recorded)")
    pause.add_argument("--by", help="who pauses (default: SFTRENEW_OPERATOR, else the login name)")
    pause.set_defaults(run=_pause)

    resume = sub.add_parser("resume", help="let a paused renewal go on")
    resume.add_argument("renewal", help="renewal id")
    resume.add_argument("--by", help="who resumes (default: SFTRENEW_OPERATOR, else the login name)")
    resume.set_defaults(run=_resume)

    abandon = sub.add_parser("abandon", help="end a renewal and free its pair")
    abandon.add_argument("renewal", help="renewal id")
    abandon.add_argument("--reason", required=True, help="why (recorded)")
    abandon.add_argument("--force", action="store_true", help="also after a CA was regenerated")
    abandon.add_argument("--by", help="who abandons (default: SFTRENEW_OPERATOR, else the login name)")
    abandon.set_defaults(run=_abandon)


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    def shown(lines: list[str]) -> None:
        print("\n".join(lines))

    try:
        done = actions.approve(
            actions.Desk(settings), args.renewal, by=operator_name(args.by, settings), shown=shown
        )
    except actions.PlanChangedError as refused:
        for line in refused.changes:
            print(f"sftrenew: refused: the plan changed since enqueue: {line}", file=sys.stderr)
        print(
            f"sftrenew: nothing was approved; fix the device, or abandon renewal {refused.renewal_id} "
            "(`sftrenew abandon`) and enqueue again",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    print(f"approved by {done.who}: {done.summary}; sent {done.sent}")
    return 0


def _pause(args: argparse.Namespace, settings: Settings) -> int:
    done = actions.pause(
        actions.Desk(settings), args.renewal, reason=args.reason, by=operator_name(args.by, settings)
    )
    if not done.paused:
        print(f"renewal {done.renewal_id} is paused already")
        return 0
    print(
        f"renewal {done.renewal_id} paused: pushes running now finish and are recorded, no new one starts, "
        f"verify waits; `sftrenew resume {done.renewal_id}` goes on"
    )
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    done = actions.resume(actions.Desk(settings), args.renewal, by=operator_name(args.by, settings))
    print(f"renewal {done.renewal_id} resumed: sent {done.sent}")
    return 0


def _abandon(args: argparse.Namespace, settings: Settings) -> int:
    reason = actions.check_reason(args.reason)
    try:
        done = actions.abandon(
            actions.Desk(settings),
            args.renewal,
            reason=reason,
            force=args.force,
            by=operator_name(args.by, settings),
        )
    except actions.RegeneratedAlreadyError as refused:
        print(f"sftrenew: refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"renewal {done.renewal_id} abandoned; pair {done.pair} is free")
    for line in done.not_on_new_ca:
        print(f"  not on the new CA: {line}")
    return 0

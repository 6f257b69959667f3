"""`sftrenew status` from the record (pure): refused pushes, restart-only pushes, progress."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline import report
from pipeline.store import Renewal, RenewalFmc, StepRun

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RESTARTED_ONLY = "files already new (written by an earlier attempt); sftunnel restarted"


def _run(step: str, state: str, device: str | None = None, attempt: int = 1, **more: str) -> StepRun:
    return StepRun(
        renewal_id="r1",
        fmc="fmc-a",
        device=device,
        step=step,
        attempt=attempt,
        state=state,
        started_at_utc=T0,
        route=more.get("route"),
        error_kind=more.get("error_kind"),
        message=more.get("message"),
    )


STEPS = [
    *(_run(name, "succeeded") for name in ("backup", "validate", "regenerate", "verify")),
    _run("push", "skipped", "ftd-live", route="direct", message="already holds the new CA and certificate"),
    _run("push", "retrying", "ftd-restart", route="direct", error_kind="DeviceUnreachableError"),
    _run("push", "succeeded", "ftd-restart", attempt=2, route="direct", message=RESTARTED_ONLY),
    _run("push", "refused", "ftd-locked", route="direct", error_kind="AuthenticationFailedError"),
    _run("push", "retrying", "ftd-slow", route="direct", error_kind="DeviceUnreachableError"),
    _run("push", "succeeded", "ftd-plain", route="via jump-1"),
    _run("verify", "succeeded", "ftd-restart"),
    _run("verify", "failed", "ftd-locked", error_kind="Unreachable"),
]


def test_device_lines_show_refused_and_restart_only_pushes() -> None:
    lines = {line.device: line for line in report.device_lines(STEPS)}
    locked = lines["ftd-locked"]
    assert (locked.push, locked.error, locked.note) == ("refused", "AuthenticationFailedError", "")
    restart = lines["ftd-restart"]
    assert (restart.push, restart.attempts, restart.error) == ("succeeded", 2, "")
    assert restart.note == RESTARTED_ONLY and restart.verdict == "verified"
    assert lines["ftd-slow"].error == "DeviceUnreachableError"  # retrying: the reason shows
    assert lines["ftd-live"].note == ""  # a skip says so in its state
    assert lines["ftd-plain"].note == ""  # a plain write and restart has nothing to add


def test_status_prints_refused_and_the_restart() -> None:
    renewal = Renewal(
        id="r1", pair="dc1", requested_by="ops", requested_at_utc=T0, state="partial", last_progress_utc=T0
    )
    fmc = RenewalFmc(renewal_id="r1", fmc="fmc-a", role="primary", state="partial")
    text = report.render(renewal, [fmc], STEPS)
    locked = next(line for line in text.splitlines() if "ftd-locked" in line)
    assert locked.split()[1] == "refused" and locked.endswith("AuthenticationFailedError")
    restart = next(line for line in text.splitlines() if "ftd-restart" in line)
    assert restart.endswith(RESTARTED_ONLY)


def test_an_ignored_duplicate_never_hides_the_real_run() -> None:
    """A duplicate regenerate that stood aside may be numbered after the run that regenerated: status shows
    the real run's state, each step once."""
    steps = [
        _run("backup", "interrupted"),
        _run("backup", "succeeded", attempt=2),
        _run("validate", "succeeded"),
        _run("regenerate", "succeeded"),
        _run("regenerate", "ignored", attempt=2),
        _run("verify", "succeeded"),
    ]
    renewal = Renewal(
        id="r1", pair="dc1", requested_by="ops", requested_at_utc=T0, state="succeeded", last_progress_utc=T0
    )
    fmc = RenewalFmc(renewal_id="r1", fmc="fmc-a", role="primary", state="succeeded")
    text = report.render(renewal, [fmc], steps)
    assert "backup:succeeded  validate:succeeded  regenerate:succeeded  verify:succeeded" in text
    assert "ignored" not in text and "interrupted" not in text
    assert report.progress([fmc], steps) == (4, 4)


def test_an_ignored_attempt_alone_still_shows() -> None:
    fmc = RenewalFmc(renewal_id="r1", fmc="fmc-a", role="primary", state="running")
    renewal = Renewal(
        id="r1", pair="dc1", requested_by="ops", requested_at_utc=T0, state="running", last_progress_utc=T0
    )
    text = report.render(renewal, [fmc], [_run("regenerate", "ignored", attempt=1)])
    assert "regenerate:ignored" in text


def test_a_refused_push_is_done_like_a_failed_one() -> None:
    fmc = RenewalFmc(renewal_id="r1", fmc="fmc-a", role="primary", state="running")
    done, total = report.progress([fmc], STEPS)
    # 4 control steps + 5 devices; only ftd-slow (still retrying) is not done.
    assert (done, total) == (8, 9)


def test_the_total_is_the_plans_from_the_start() -> None:
    """A progress bar whose total grows as pushes are recorded goes backwards (16/17, then 23/26): the plan
    at enqueue says how many peers each FMC has, so the total is right before the first push."""
    fmc = RenewalFmc(renewal_id="r1", fmc="fmc-a", role="primary", state="running")
    early = [_run("backup", "succeeded"), _run("validate", "succeeded")]
    assert report.progress([fmc], early, {"fmc-a": 5}) == (2, 9)
    assert report.progress([fmc], STEPS, {"fmc-a": 5}) == (8, 9)  # as many devices as planned: unchanged
    assert report.progress([fmc], STEPS, {"fmc-a": 3}) == (8, 9)  # never fewer than the recorded ones
    assert report.progress([fmc], early) == (2, 4)  # no plan (a renewal from before the gate)

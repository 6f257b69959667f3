"""The flow's decisions as a table (recorded state -> decision: every redelivery and crash point), the retry
policy, `sftrenew retry`'s choice, the canvas as data and the Celery limits (no broker, no database)."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import pytest
from celery.canvas import Signature, _chain, group

from pipeline import flow
from pipeline.devices.session import DIRECT, Route
from pipeline.errors import REFUSAL_KINDS, ConfigError
from pipeline.flow import (
    NO_ROUTE,
    NOT_RETRYABLE,
    Advance,
    Attempt,
    FailFmc,
    Finish,
    FmcRecord,
    GiveUp,
    PushHistory,
    Retry,
    RetryPolicy,
    RetryRound,
    SendControl,
    SendPushes,
    SendVerify,
    Start,
    Stop,
    UnknownDevices,
    Wait,
)
from pipeline.inventory_loader import load_inventory
from pipeline.settings import CelerySettings, Settings, SshSettings
from pipeline.store import StepRun
from pipeline.store.tables import FMC_STATES, STEP_STATES, STEPS
from tasks.flow import _done, build_canvas
from workers.app import check_limits, make_celery

INVENTORY = """
version: 1
known_hosts: known_hosts
credentials:
  admin: {username: admin, password: {env: SFTRENEW_TEST_PW}}
jump_servers:
  jump-1: {host: 127.0.0.9, credential: admin}
pairs:
  dc1:
    primary: {name: fmc-a, host: 127.0.0.1, credential: admin}
    secondary: {name: fmc-b, host: 127.0.0.2, credential: admin}
    ftds:
      - {name: ftd-1, host: 127.0.0.3, credential: admin, jump: jump-1, site: east}
      - {name: ftd-2, host: 127.0.0.4, credential: admin}
"""
NOW = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def app() -> None:
    make_celery(Settings()).set_current()


def test_canvas_is_control_steps_then_a_push_per_peer() -> None:
    pair = load_inventory(INVENTORY, source="t").pair("dc1")
    canvas = build_canvas("r1", pair, "fmc-a")
    assert isinstance(canvas, _chain)
    steps: list[Signature] = list(canvas.tasks)
    assert [s.task for s in steps[:3]] == ["sftrenew.backup", "sftrenew.validate", "sftrenew.regenerate"]
    assert all(
        s.immutable and s.args == ("r1", "fmc-a") and s.options["queue"] == "control" for s in steps[:3]
    )
    pushes = steps[3]
    assert isinstance(pushes, group)
    shown = {(s.args[2], s.options["queue"], s.options["shadow"]) for s in pushes.tasks}
    assert shown == {
        ("ftd-1", "push.east", "sftrenew.push[r1 fmc-a->ftd-1]"),
        ("ftd-2", "push", "sftrenew.push[r1 fmc-a->ftd-2]"),
        ("fmc-b", "push", "sftrenew.push[r1 fmc-a->fmc-b]"),
    }
    # Only ids and names travel: nothing in the canvas is a password, a key or a certificate.
    assert all(isinstance(a, str | int | type(None)) for s in steps[:3] for a in s.args)
    resumed = build_canvas("r1", pair, "fmc-b", start="regenerate")
    assert [s.task for s in resumed.tasks[:1]] == ["sftrenew.regenerate"]


@pytest.mark.parametrize(
    ("celery", "ssh", "message"),
    [
        (
            CelerySettings(task_time_limit=3600, visibility_timeout=3600),
            SshSettings(),
            "SFTRENEW_TASK_TIME_LIMIT",
        ),
        (CelerySettings(retry_backoff_max=4000), SshSettings(), "SFTRENEW_RETRY_BACKOFF_MAX"),
        (CelerySettings(task_time_limit=600), SshSettings(regenerate_timeout=900), "SFTRENEW_SSH_REGENERATE"),
    ],
)
def test_limits_that_would_duplicate_or_cut_tasks_are_refused(
    celery: CelerySettings, ssh: SshSettings, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_limits(Settings(celery=celery, ssh=ssh))


def test_default_limits_are_consistent() -> None:
    check_limits(Settings())


# ------------------------------------------------------------------ the renewal: recorded state -> decisions

PEERS = ("fmc-b", "ftd-1", "ftd-2")


def pending(name: str) -> FmcRecord:
    return FmcRecord(name, "pending")


def running(
    done: tuple[flow.ControlStep, ...] = (), push_round: int = 0, unsettled: tuple[str, ...] = ()
) -> FmcRecord:
    return FmcRecord("fmc-a", "running", push_round, frozenset(done), unsettled)


@pytest.mark.parametrize(
    ("fmcs", "after", "resumed"),
    [
        pytest.param([pending("fmc-a"), pending("fmc-b")], Start("fmc-a"), Advance(), id="enqueued"),
        pytest.param(
            [running(), pending("fmc-b")], Wait("fmc-a"), SendControl("fmc-a", "backup"), id="mid-backup"
        ),
        pytest.param(
            [running(("backup",)), pending("fmc-b")],
            Wait("fmc-a"),
            SendControl("fmc-a", "validate"),
            id="after-backup",
        ),
        pytest.param(
            [running(("backup", "validate")), pending("fmc-b")],
            Wait("fmc-a"),
            SendControl("fmc-a", "regenerate"),
            id="mid-regenerate",
        ),
        pytest.param(
            [running(("validate", "regenerate")), pending("fmc-b")],
            Wait("fmc-a"),
            SendControl("fmc-a", "backup"),
            id="a-step-before-not-recorded",
        ),
        pytest.param(
            [running(flow.CONTROL_STEPS, 1, PEERS), pending("fmc-b")],
            Wait("fmc-a"),
            SendPushes("fmc-a", PEERS, 1),
            id="after-regenerate-before-the-fan-out",
        ),
        pytest.param(
            [running(flow.CONTROL_STEPS, 1, ("ftd-2",)), pending("fmc-b")],
            Wait("fmc-a"),
            SendPushes("fmc-a", ("ftd-2",), 1),
            id="after-some-pushes",
        ),
        pytest.param(
            [running(flow.CONTROL_STEPS, 1), pending("fmc-b")],
            Wait("fmc-a"),
            SendVerify("fmc-a", 1),
            id="after-all-pushes-before-verify",
        ),
        pytest.param(
            [running(flow.CONTROL_STEPS, 2, ("ftd-1",)), FmcRecord("fmc-b", "partial")],
            Wait("fmc-a"),
            SendPushes("fmc-a", ("ftd-1",), 2),
            id="a-retry-round-after-some-pushes",
        ),
        pytest.param(
            [running(flow.CONTROL_STEPS, 2), FmcRecord("fmc-b", "partial")],
            Wait("fmc-a"),
            SendVerify("fmc-a", 2),
            id="a-retry-round-before-verify",
        ),
        pytest.param(
            [FmcRecord("fmc-a", "succeeded"), pending("fmc-b")],
            Start("fmc-b"),
            Advance(),
            id="primary-finished-secondary-not-started",
        ),
        pytest.param(
            [FmcRecord("fmc-a", "partial"), pending("fmc-b")],
            Start("fmc-b"),
            Advance(),
            id="primary-partial-secondary-not-started",
        ),
        pytest.param(
            [FmcRecord("fmc-a", "succeeded"), FmcRecord("fmc-b", "running", 0, frozenset({"backup"}))],
            Wait("fmc-b"),
            SendControl("fmc-b", "validate"),
            id="secondary-after-backup",
        ),
        pytest.param(
            [FmcRecord("fmc-a", "failed"), pending("fmc-b")], Stop("fmc-a"), Advance(), id="primary-failed"
        ),
        pytest.param(
            [FmcRecord("fmc-a", "succeeded"), FmcRecord("fmc-b", "failed")],
            Stop("fmc-b"),
            Advance(),
            id="secondary-failed",
        ),
        pytest.param(
            [FmcRecord("fmc-a", "succeeded"), FmcRecord("fmc-b", "succeeded")],
            Finish("succeeded"),
            Advance(),
            id="everything-finished",
        ),
        pytest.param(
            [FmcRecord("fmc-a", "succeeded"), FmcRecord("fmc-b", "partial")],
            Finish("partial"),
            Advance(),
            id="finished-one-partial",
        ),
    ],
)
def test_the_flow_from_the_record(fmcs: list[FmcRecord], after: flow.AfterFmc, resumed: flow.Resume) -> None:
    assert flow.after_fmc(fmcs) == after
    assert flow.resume(fmcs) == resumed


def test_what_the_decisions_say_in_logs_and_results() -> None:
    assert [str(d) for d in (Start("a"), Wait("a"), Stop("a"), Finish("partial"))] == [
        "started a",
        "waiting for a",
        "stopped: a failed",
        "finished: partial",
    ]
    assert [
        d.kind for d in (Advance(), SendControl("a", "backup"), SendPushes("a", (), 1), SendVerify("a", 1))
    ] == [
        "advance",
        "control",
        "pushes",
        "verify",
    ]


@pytest.mark.parametrize(("ok", "state"), [(True, "succeeded"), (False, "partial")])
def test_a_verify_ends_its_fmc(ok: bool, state: str) -> None:
    assert flow.after_verify(ok) == state


@pytest.mark.parametrize(
    ("last", "decided"),
    [(True, SendVerify("fmc-a", 2)), (False, None)],
    ids=["settled-the-last-slot", "another-slot-open-or-a-redelivered-settle"],
)
def test_the_settle_that_completes_a_round_sends_its_verify(last: bool, decided: SendVerify | None) -> None:
    assert flow.after_settle(last, "fmc-a", 2) == decided


def _step(step: str, state: str, device: str | None = None) -> StepRun:
    return StepRun(
        renewal_id="r", fmc="fmc-a", step=step, device=device, attempt=1, state=state, started_at_utc=NOW
    )


def test_the_record_of_steps_becomes_the_control_steps_done() -> None:
    steps = [
        _step("backup", "failed"),
        _step("backup", "succeeded"),
        _step("validate", "retrying"),
        _step("push", "succeeded", "ftd-1"),
        _step("verify", "succeeded", "ftd-1"),
    ]
    assert _done(steps) == frozenset({"backup"})


def test_the_flow_speaks_the_store_vocabulary() -> None:
    """`pipeline.flow` spells the store's states itself (it imports no database module): they must match."""
    assert flow.FMC_STATES == FMC_STATES
    assert typing.get_args(flow.FmcState) == FMC_STATES
    assert typing.get_args(flow.StepState) == STEP_STATES
    assert set(flow.CONTROL_STEPS) < set(STEPS)
    assert set(flow.GAVE_UP_STATES) <= set(STEP_STATES)
    assert {"ignored", "interrupted"} <= set(STEP_STATES)


@pytest.mark.parametrize(
    ("state", "runs"),
    [("queued", True), ("running", True), ("succeeded", False), ("failed", False), ("partial", False)],
)
def test_a_message_for_a_finished_renewal_runs_no_step(state: str, runs: bool) -> None:
    assert flow.takes_step(state) is runs


@pytest.mark.parametrize(
    ("decided", "taken"),
    [
        (SendControl("fmc-a", "backup"), flow.Superseded("fmc-a", ("backup", "validate", "regenerate"))),
        (SendControl("fmc-b", "regenerate"), flow.Superseded("fmc-b", ("regenerate",))),
        (SendPushes("fmc-a", ("ftd-1", "ftd-2"), 2), flow.Superseded("fmc-a", ("push",), ("ftd-1", "ftd-2"))),
        (SendVerify("fmc-a", 1), flow.Superseded("fmc-a", ("verify",))),
        (Advance(), None),
    ],
)
def test_a_resend_takes_over_the_attempts_of_what_it_sends(
    decided: flow.Resume, taken: flow.Superseded | None
) -> None:
    """The reconciler closes as interrupted the attempts still started of exactly the steps it sends again."""
    assert flow.superseded(decided) == taken


# ------------------------------------------------------------------ attempts and the one retry policy

JUMP = Route("jump", "jump-1")
#: Jitter fixed at "all of the step": the delays are exact.
POLICY = RetryPolicy(direct_attempts=2, backoff_s=1.0, backoff_max_s=60.0, jitter=lambda: 1.0)


@pytest.mark.parametrize(
    ("routes", "attempt", "retryable", "decided"),
    [
        pytest.param([DIRECT, JUMP], 0, True, Attempt(1, DIRECT, 0.0), id="first-attempt-at-once"),
        pytest.param([DIRECT, JUMP], 1, True, Attempt(2, DIRECT, 1.0), id="direct-again-after-backoff"),
        pytest.param([DIRECT, JUMP], 2, True, Attempt(3, JUMP, 2.0), id="then-the-jump-server"),
        pytest.param([DIRECT, JUMP], 3, True, GiveUp(NO_ROUTE), id="every-route-had-its-turn"),
        pytest.param([DIRECT, JUMP], 1, False, GiveUp(NOT_RETRYABLE), id="not-retryable"),
        pytest.param([DIRECT], 2, True, GiveUp(NO_ROUTE), id="no-jump-server"),
        pytest.param([], 0, True, GiveUp(NO_ROUTE), id="no-route-at-all"),
    ],
)
def test_next_attempt(routes: list[Route], attempt: int, retryable: bool, decided: Attempt | GiveUp) -> None:
    assert flow.next_attempt(routes, attempt, retryable, POLICY) == decided


@pytest.mark.parametrize(
    ("attempt", "decided"),
    [
        pytest.param(1, Attempt(1, DIRECT), id="first"),
        pytest.param(3, Attempt(3, JUMP), id="a-celery-retry-already-waited"),
        pytest.param(4, GiveUp(NO_ROUTE), id="redelivered-past-the-last-route"),
    ],
)
def test_begin_push(attempt: int, decided: Attempt | GiveUp) -> None:
    assert flow.begin_push([DIRECT, JUMP], attempt, POLICY) == decided


@pytest.mark.parametrize(
    ("ended", "abandoned", "settled", "decided"),
    [
        pytest.param(False, False, None, "attempt", id="the-push-itself"),
        pytest.param(False, False, "succeeded", "attempt", id="a-duplicate-checks-the-device"),
        pytest.param(True, False, "skipped", "attempt", id="after-the-end-it-still-checks"),
        pytest.param(False, False, "failed", flow.Reopen(), id="re-applied-while-running"),
        pytest.param(True, False, "failed", flow.Reopen(), id="re-applied-after-a-partial-end"),
        pytest.param(True, True, "failed", "not", id="abandoned"),
        pytest.param(True, False, None, "not", id="ended-unsettled"),
    ],
)
def test_push_delivery(ended: bool, abandoned: bool, settled: str | None, decided: object) -> None:
    got = flow.push_delivery(renewal_ended=ended, abandoned=abandoned, settled=settled)
    if decided == "not":
        assert isinstance(got, flow.NotDelivered) and "sftrenew" in got.reason
    else:
        assert got == decided


@pytest.mark.parametrize(
    ("decided", "refused", "state"),
    [
        (Attempt(2, DIRECT, 1.0), False, "retrying"),
        (Attempt(2, DIRECT, 1.0), True, "retrying"),
        (GiveUp(NO_ROUTE), True, "refused"),
        (GiveUp(NOT_RETRYABLE), False, "failed"),
    ],
)
def test_a_failed_attempt_is_recorded_as(decided: Attempt | GiveUp, refused: bool, state: str) -> None:
    assert flow.attempt_failed_state(decided, refused=refused) == state


@pytest.mark.parametrize(
    ("attempt", "retryable", "decided"),
    [
        pytest.param(1, True, Retry(1.0), id="unreachable-once"),
        pytest.param(3, True, Retry(4.0), id="unreachable-third-time"),
        pytest.param(4, True, FailFmc("still failing after 3 retries"), id="retries-spent"),
        pytest.param(1, False, FailFmc(NOT_RETRYABLE), id="not-retryable"),
    ],
)
def test_after_control_error(attempt: int, retryable: bool, decided: Retry | FailFmc) -> None:
    assert flow.after_control_error(attempt, retryable, POLICY) == decided
    assert flow.control_failed_state(decided) == ("retrying" if isinstance(decided, Retry) else "failed")


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff_s=2.0, backoff_max_s=60.0)
    for attempt, low, high in ((1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0), (10, 30.0, 60.0)):
        for _ in range(50):
            assert low <= policy.delay_s(attempt) <= high
    assert RetryPolicy(backoff_s=2.0, jitter=lambda: 0.0).delay_s(3) == 4.0  # half of the step at least


def test_one_policy_from_the_settings() -> None:
    settings = Settings(push_direct_attempts=3, celery=CelerySettings(retry_backoff=5, retry_backoff_max=50))
    policy = RetryPolicy.of(settings)
    assert (policy.direct_attempts, policy.backoff_s, policy.backoff_max_s) == (3, 5.0, 50.0)
    assert policy.control_retries == flow.CONTROL_RETRIES


# ------------------------------------------------------------------ sftrenew retry

HISTORY = [
    PushHistory("fmc-a", True, 1, {"ftd-1": "succeeded", "ftd-2": "refused", "fmc-b": "failed"}),
    PushHistory("fmc-b", True, 2, {"ftd-1": "retrying", "ftd-2": "failed", "fmc-a": "skipped"}),
    PushHistory("fmc-c", False, 0, {"ftd-1": "failed"}),
]


@pytest.mark.parametrize(
    ("requested", "decided"),
    [
        pytest.param(
            [],
            (RetryRound("fmc-a", 2, ("fmc-b", "ftd-2")), RetryRound("fmc-b", 3, ("ftd-2",))),
            id="every-failed-or-refused-device-of-fmcs-that-regenerated",
        ),
        pytest.param(
            ["ftd-2"], (RetryRound("fmc-a", 2, ("ftd-2",)), RetryRound("fmc-b", 3, ("ftd-2",))), id="one"
        ),
        pytest.param(["ftd-1"], (), id="a-device-that-did-not-fail"),
        pytest.param(
            ["ftd-9", "ftd-2", "ftd-0"],
            UnknownDevices(("ftd-0", "ftd-9"), ("fmc-a", "fmc-b", "ftd-1", "ftd-2")),
            id="unknown-devices-are-named",
        ),
    ],
)
def test_retry_devices(requested: list[str], decided: tuple[RetryRound, ...] | UnknownDevices) -> None:
    assert flow.retry_devices(HISTORY, requested) == decided


def test_unknown_devices_say_which_and_what_is_known() -> None:
    said = str(UnknownDevices(("ftd-9",), ("ftd-1",)))
    assert said == "this renewal never pushed to ftd-9 (it pushed to: ftd-1)"


def test_a_slot_never_attempted_is_known_but_not_retried() -> None:
    history = [PushHistory("fmc-a", True, 1, {"ftd-1": None})]
    assert flow.retry_devices(history, ["ftd-1"]) == ()


AUTH, HOST_KEY, UNREACHABLE = "AuthenticationFailedError", "HostKeyRejectedError", "DeviceUnreachableError"


@pytest.mark.parametrize(
    ("step", "round_", "at_validate", "push_this_round", "decided"),
    [
        # Round 1: a device that refused validate's login is not logged in to again, by the push or verify.
        ("push", 1, AUTH, None, flow.Refused(AUTH, "validate")),
        ("push", 1, HOST_KEY, None, flow.Refused(HOST_KEY, "validate")),
        ("verify", 1, AUTH, AUTH, flow.Refused(AUTH, "push")),
        ("verify", 1, AUTH, None, flow.Refused(AUTH, "validate")),
        # A retry (round 2+) is the operator's word that it was fixed: the push logs in again...
        ("push", 2, AUTH, None, None),
        ("verify", 2, AUTH, None, None),
        # ...and verify does not log in where that push was refused again.
        ("verify", 2, AUTH, HOST_KEY, flow.Refused(HOST_KEY, "push")),
        # Other failures do not protect the device: they cost it nothing.
        ("push", 1, UNREACHABLE, None, None),
        ("push", 1, None, None, None),
        ("verify", 1, None, UNREACHABLE, None),
        ("verify", 1, None, None, None),
    ],
)
def test_a_device_that_refused_a_login_is_not_logged_in_to_again_until_a_retry(
    step: typing.Literal["push", "verify"],
    round_: int,
    at_validate: str | None,
    push_this_round: str | None,
    decided: flow.Refused | None,
) -> None:
    assert (
        flow.login_refused(step, round_, at_validate=at_validate, push_this_round=push_this_round) == decided
    )


def test_the_flow_knows_the_refused_kinds_of_the_error_tree() -> None:
    assert set(flow.REFUSAL_KINDS) == {k.value for k in REFUSAL_KINDS}

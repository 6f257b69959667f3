"""The canvas as data, the reconciler's decision, the Celery limits and the retry backoff (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery.canvas import Signature, _chain, group

from pipeline.errors import ConfigError
from pipeline.inventory import load_inventory
from pipeline.settings import CelerySettings, Settings, SshSettings
from pipeline.store import RenewalFmc, StepRun
from tasks.flow import Work, build_canvas, next_work
from tasks.record import backoff
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
        ("ftd-1", "push.east", "sftrenew.push[fmc-a->ftd-1]"),
        ("ftd-2", "push", "sftrenew.push[fmc-a->ftd-2]"),
        ("fmc-b", "push", "sftrenew.push[fmc-a->fmc-b]"),
    }
    # Only ids and names travel: nothing in the canvas is a password, a key or a certificate.
    assert all(isinstance(a, str | int | type(None)) for s in steps[:3] for a in s.args)
    resumed = build_canvas("r1", pair, "fmc-b", start="regenerate")
    assert [s.task for s in resumed.tasks[:1]] == ["sftrenew.regenerate"]


def _fmc(state: str, push_round: int = 0) -> RenewalFmc:
    return RenewalFmc(renewal_id="r", fmc="fmc-a", role="primary", state=state, push_round=push_round)


def _step(step: str, state: str) -> StepRun:
    return StepRun(renewal_id="r", fmc="fmc-a", step=step, attempt=1, state=state, started_at_utc=NOW)


@pytest.mark.parametrize(
    ("fmcs", "steps", "unsettled", "work", "start"),
    [
        ([_fmc("pending")], [], [], Work.ADVANCE, None),
        ([_fmc("running")], [], [], Work.CONTROL, "backup"),
        ([_fmc("running")], [_step("backup", "succeeded")], [], Work.CONTROL, "validate"),
        (
            [_fmc("running")],
            [_step("backup", "succeeded"), _step("validate", "failed")],
            [],
            Work.CONTROL,
            "validate",
        ),
        (
            [_fmc("running", 1)],
            [_step(s, "succeeded") for s in ("backup", "validate", "regenerate")],
            ["ftd-1"],
            Work.PUSHES,
            None,
        ),
        (
            [_fmc("running", 1)],
            [_step(s, "succeeded") for s in ("backup", "validate", "regenerate")],
            [],
            Work.VERIFY,
            None,
        ),
    ],
)
def test_reconciler_sends_the_next_missing_piece(
    fmcs: list[RenewalFmc], steps: list[StepRun], unsettled: list[str], work: Work, start: str | None
) -> None:
    decided = next_work(fmcs, steps, unsettled)
    assert decided.work is work and decided.start == start
    if work is Work.PUSHES:
        assert decided.devices == ("ftd-1",) and decided.round == 1


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


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    for attempt, low, high in ((1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0), (10, 30.0, 60.0)):
        for _ in range(50):
            assert low <= backoff(attempt, base=2.0, cap=60.0) <= high

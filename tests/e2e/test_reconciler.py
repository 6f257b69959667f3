"""A reconciler one bad renewal cannot stop: real worker, real Redis, SQLite, the lab.

Two stalled renewals whose messages were lost: one of the lab's pair, one of a pair since removed from the
inventory. The reconciler marks the second with its reason, skips it, and carries the first on to the end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline import store
from tests.e2e.conftest import MakeEnv

pytestmark = pytest.mark.e2e


def test_a_renewal_of_a_pair_gone_from_the_inventory_does_not_stop_the_others(
    make_sqlite_env: MakeEnv,
) -> None:
    env = make_sqlite_env({"ftds": 2}, SFTRENEW_STALL_AFTER="5")
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    with store.open_session(env.engine) as db:
        # As `enqueue` records them, but with their first message lost (never sent): both stalled.
        gone, _ = store.start_renewal(
            session=db,
            pair="gone",
            requested_by="test",
            fmcs=[("fmc-gone-a", "primary"), ("fmc-gone-b", "secondary")],
            now=long_ago,
        )
        lab, _ = store.start_renewal(
            session=db,
            pair="lab",
            requested_by="test",
            fmcs=[("fmc-primary", "primary"), ("fmc-secondary", "secondary")],
            now=long_ago,
        )
        gone_id, lab_id = gone.id, lab.id

    first = env.sftrenew("reconcile")
    assert first.returncode == 0, first.stderr
    assert f"{gone_id}: skipped: " in first.stdout and "no FMC pair named 'gone'" in first.stdout
    assert f"{lab_id}: sent " in first.stdout
    again = env.sftrenew("reconcile")  # the skipped one again: its reason is recorded once only
    assert again.returncode == 0 and f"{gone_id}: skipped: " in again.stdout, again.stderr

    env.start_worker()
    assert env.wait_finished(lab_id).state == "succeeded"
    with store.open_session(env.engine) as db:
        events = store.events_of(session=db, renewal_id=gone_id)
        assert [e.action for e in events] == ["reconcile-skipped"]
        assert events[0].detail and "gone" in events[0].detail
        assert store.renewal(session=db, renewal_id=gone_id).state in ("queued", "running")  # type: ignore[union-attr]
    status = env.sftrenew("status", gone_id)
    assert "reconcile-skipped" in status.stdout, status.stdout

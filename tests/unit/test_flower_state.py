"""Flower keeps a task's shadow name when its `task-sent` event arrives late (as it does under load).

Flower's own event state, fed the events a sender and a worker produce, in every order; no Flower server is
needed for the merge rule (the browser test sees the page).
"""

from __future__ import annotations

import itertools

import pytest
from celery.events.state import Task
from flower.events import EventsState

from workers.flower_state import NamedTask, keep_task_names

SHADOW = "sftrenew.push[3f2a9c1e fmc-primary->ftd-003]"
KINDS = ("sent", "received", "started", "succeeded")


def _event(kind: str) -> dict[str, object]:
    base: dict[str, object] = {"uuid": "t-1", "hostname": "w1@vm", "local_received": 0.0, "clock": 1}
    fields: dict[str, dict[str, object]] = {
        "sent": {"name": "sftrenew.push", "args": "()", "timestamp": 1.0},
        "received": {"name": SHADOW, "args": "()", "timestamp": 2.0},
        "started": {"timestamp": 3.0},
        "succeeded": {"result": "{}", "runtime": 0.1, "timestamp": 4.0},
    }
    return {**base, "type": f"task-{kind}", **fields[kind]}


def _name_after(task_class: type[Task], order: tuple[str, ...]) -> str:
    state = type("State", (EventsState,), {"Task": task_class})()
    for kind in order:
        state.event(_event(kind))
    return str(state.tasks["t-1"].name)


def test_celerys_own_rule_lets_a_late_sent_event_take_the_name() -> None:
    """The problem the rule mends, on celery's task class."""
    assert _name_after(Task, ("received", "started", "succeeded", "sent")) == "sftrenew.push"


@pytest.mark.parametrize("order", [p for p in itertools.permutations(KINDS) if p[0] != "started"])
def test_the_shadow_name_stays_in_every_order(order: tuple[str, ...]) -> None:
    assert _name_after(NamedTask, order) == SHADOW


def test_flower_is_given_the_rule() -> None:
    keep_task_names()
    assert EventsState.Task is NamedTask

"""Flower's view of a task keeps the name the task was given (`sftrenew.push[fmc->ftd]`), whatever order the
events reach Flower in.

Flower builds its task list with celery's `events.state`. A task's `task-sent` event carries the registered
name (`sftrenew.push`), because the sender's event is built before the shadow name is looked at; the
`task-received` event the worker sends carries the shadow name. Under load, the sent event can reach Flower
after the received, started or even succeeded one, and celery's merge then takes every field of that late
event, the name included (`Task.merge_rules` only guards fields of a late RECEIVED event). The task then shows
under the bare name: the shadow name lost on Flower's page although the worker reported it.

This adds, for a late sent (PENDING) event, the merge rule celery has for a late RECEIVED one, minus the
name: a sent event still fills in everything it knows when it comes first.
"""

from __future__ import annotations

from typing import ClassVar

from celery import states
from celery.events.state import Task
from flower.events import EventsState


class NamedTask(Task):  # type: ignore[misc]
    """A task in Flower's state whose name a late `task-sent` event cannot overwrite."""

    merge_rules: ClassVar[dict[str, tuple[str, ...]]] = {
        **Task.merge_rules,
        states.PENDING: ("args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires"),
    }


def keep_task_names() -> None:
    """Make the Flower of this process keep shadow names (call before Flower starts)."""
    EventsState.Task = NamedTask

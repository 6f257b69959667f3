"""Queue names within `SFTRENEW_QUEUE_PREFIX`: every sender, the router, the worker's default queues and
Celery's default queue agree, so a deployment with another prefix (the lab beside production) on the same
Redis never takes these tasks (no broker needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery, current_app
from celery.canvas import Signature, _chain, group

from pipeline.errors import ConfigError
from pipeline.inventory_loader import load_inventory
from pipeline.settings import CelerySettings, Settings, load_settings
from sftrenew.services import worker_queues
from tasks.flow import build_canvas, verify_step
from tasks.queues import control_queue, push_queue
from tasks.routing import device_queue, route
from tests.unit.test_flow import INVENTORY
from workers.app import make_celery

LAB = Settings(celery=CelerySettings(queue_prefix="lab"))


@pytest.fixture
def lab_app() -> Iterator[Celery]:
    before = current_app._get_current_object()
    app = make_celery(LAB)
    app.set_current()
    yield app
    before.set_current()


def test_names_within_a_prefix() -> None:
    assert (control_queue(), push_queue(None), push_queue("dc2")) == ("control", "push", "push.dc2")
    assert (control_queue("lab"), push_queue(None, "lab"), push_queue("dc2", "lab")) == (
        "lab.control",
        "lab.push",
        "lab.push.dc2",
    )


def test_the_renewal_sends_to_its_prefixed_queues(lab_app: Celery) -> None:
    pair = load_inventory(INVENTORY, source="t").pair("dc1")
    canvas = build_canvas("r1", pair, "fmc-a")
    assert isinstance(canvas, _chain)
    steps: list[Signature] = list(canvas.tasks)
    assert {s.options["queue"] for s in steps[:3]} == {"lab.control"}
    pushes = steps[3]
    assert isinstance(pushes, group)
    assert {(s.args[2], s.options["queue"]) for s in pushes.tasks} == {
        ("ftd-1", "lab.push.east"),
        ("ftd-2", "lab.push"),
        ("fmc-b", "lab.push"),
    }
    assert verify_step("r1", "fmc-a", 1).options["queue"] == "lab.control"
    assert lab_app.conf.task_default_queue == "lab.control"


def test_a_task_sent_without_a_queue_is_routed_within_the_prefix(lab_app: Celery) -> None:
    assert route("sftrenew.validate", ("r1", "fmc-a"), {}, {}) == {"queue": "lab.control"}
    # No inventory here (as in Flower): the push goes to the prefix's `push`, whose worker sends it on.
    assert route("sftrenew.push", ("r1", "fmc-a", "ftd-1", 1, None), {}, {}) == {"queue": "lab.push"}
    inventory = load_inventory(INVENTORY, source="t")
    assert device_queue(inventory, "ftd-1", "lab") == "lab.push.east"
    assert device_queue(inventory, "ftd-1") == "push.east"


def test_a_worker_serves_its_queues_within_the_prefix() -> None:
    assert worker_queues(None, Settings()) == "control,push"
    assert worker_queues(None, LAB) == "lab.control,lab.push"
    assert worker_queues("push.dc2, control", LAB) == "lab.push.dc2,lab.control"
    assert make_celery(Settings()).conf.task_default_queue == "control"


@pytest.mark.parametrize("prefix", ["lab.", ".lab", "a b", "lab/1", "x" * 41])
def test_a_prefix_is_one_plain_name(prefix: str) -> None:
    with pytest.raises(ConfigError, match="SFTRENEW_QUEUE_PREFIX"):
        load_settings({"SFTRENEW_QUEUE_PREFIX": prefix})
    assert load_settings({"SFTRENEW_QUEUE_PREFIX": "lab-2"}).celery.queue_prefix == "lab-2"

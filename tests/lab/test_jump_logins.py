"""Logins through one jump server whose sshd sheds load (MaxStartups): the product bounds its own logins per
jump server, tries again a login the jump server dropped before its banner (for other clients' sake), and
never tries again a refused one."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import yaml

from pipeline.devices.factory import SessionFactory
from pipeline.devices.jump_logins import LOGIN_ATTEMPTS
from pipeline.devices.session import Route
from pipeline.errors import AuthenticationFailedError, DeviceUnreachableError
from pipeline.secrets import read_inventory
from pipeline.settings import Settings, SshSettings
from pipeline.steps.validate import probe_peers
from sftlab.fleet.spec import ftd_names
from tests.lab.fixtures import MakeLab, RunningLab
from tests.lab.test_max_startups import pending
from tests.lab.test_steps import factory_for

pytestmark = pytest.mark.lab

JUMP = Route("jump", "jump-1")
FTDS = 30
THREADS = 32


def settings(**ssh: Any) -> Settings:
    base: dict[str, Any] = {"connect_timeout": 5, "banner_timeout": 5, "auth_timeout": 5}
    return Settings(ssh=SshSettings(**(base | ssh)))


def jump_only_lab(make_lab: MakeLab, ftds: int, max_startups: str) -> RunningLab:
    """Every FTD reachable only through jump-1 (its direct route refused), whose sshd has `max_startups`."""
    devices: dict[str, dict[str, Any]] = {name: {"direct": "refuse"} for name in ftd_names(ftds)}
    devices["jump-1"] = {"max_startups": max_startups}
    return make_lab(ftds=ftds, devices=devices)


@pytest.mark.parametrize(
    ("max_startups", "jump_logins"),
    [
        ("3:100:4", 3),  # drops every new connection once 3 are logging in; the bound at 3
        ("10:30:100", 8),  # OpenSSH's default, and ours: it drops nothing below 10
    ],
)
def test_a_step_reaches_every_device_through_one_jump_server(
    make_lab: MakeLab, max_startups: str, jump_logins: int
) -> None:
    """32 threads probe 30 FTDs through jump-1: with the bound at or below the jump server's MaxStartups
    start, no login is dropped and every device is reached. Checked by hand at 3:100:4 (2026-12-03): with the
    bound at 32, 27 of 30 were reached (39 logins dropped), 3 of 30 without the retry; at 8, 30 of 30 with
    the retry (27 dropped), 7 without it."""
    lab = jump_only_lab(make_lab, FTDS, max_startups)
    factory = factory_for(lab, settings(jump_logins=jump_logins))
    ftds = read_inventory(lab.directory / "inventory.yaml").pair("lab").ftds
    probes = probe_peers(factory, ftds, workers=THREADS)
    routes_ok = {name: [p.route for p in probe.probes if p.ok] for name, probe in probes.items()}
    assert routes_ok == {ftd.name: [JUMP] for ftd in ftds}
    assert lab.startups_dropped("jump-1") == 0


def test_a_login_dropped_for_other_clients_is_tried_again(make_lab: MakeLab) -> None:
    """Other clients hold jump-1 at its MaxStartups: the product's login is dropped before the banner, tried
    again after a pause, and goes through once they are gone."""
    lab = jump_only_lab(make_lab, 1, "2:100:3")
    factory = factory_for(lab, settings())
    opened: list[object] = []
    with pending(lab.target("jump-1"), 2):
        worker = threading.Thread(target=lambda: opened.append(open_via_jump(factory)))
        worker.start()
        wait_for_drops(lab, 1)
    worker.join(timeout=30)
    assert len(opened) == 1 and not isinstance(opened[0], Exception), opened
    assert 1 <= lab.startups_dropped("jump-1") < LOGIN_ATTEMPTS


def open_via_jump(factory: SessionFactory) -> object:
    try:
        factory.open("ftd-001", JUMP).close()
    except Exception as exc:  # handed to the test's thread
        return exc
    return "opened"


def wait_for_drops(lab: RunningLab, count: int) -> None:
    deadline = time.monotonic() + 10
    while lab.startups_dropped("jump-1") < count:
        assert time.monotonic() < deadline, "jump-1 dropped no login"
        time.sleep(0.01)


def test_a_jump_server_that_keeps_dropping_is_unreachable_after_the_last_attempt(make_lab: MakeLab) -> None:
    lab = jump_only_lab(make_lab, 1, "1:100:2")
    with pending(lab.target("jump-1"), 1), pytest.raises(DeviceUnreachableError) as caught:
        factory_for(lab, settings()).open("ftd-001", JUMP)
    assert "closed the connection before its SSH banner" in str(caught.value), caught.value
    assert caught.value.retryable and caught.value.device == "ftd-001"
    assert lab.startups_dropped("jump-1") == LOGIN_ATTEMPTS


def test_a_refused_jump_login_is_not_tried_again(make_lab: MakeLab) -> None:
    """A refused credential counts towards the jump server's AAA lockout: one attempt, one refusal."""
    lab = make_lab(ftds=1, devices={"jump-1": {"wrong_password": True}})
    with pytest.raises(AuthenticationFailedError):
        factory_for(lab, settings()).open("ftd-001", JUMP)
    assert lab.refused_logins("jump-1") == 1


def test_a_timed_out_jump_login_is_not_tried_again(make_lab: MakeLab) -> None:
    """A jump server that accepts and never sends its banner: its wait was spent once, and is not again."""
    lab = make_lab(ftds=1)
    with socket.create_server((lab.device("jump-1")["host"], 0)) as silent:
        inventory_path = lab.directory / "inventory.yaml"
        inventory = yaml.safe_load(inventory_path.read_text())
        inventory["jump_servers"]["jump-1"]["port"] = silent.getsockname()[1]
        inventory_path.write_text(yaml.safe_dump(inventory))
        with pytest.raises(DeviceUnreachableError, match="failed: Error reading SSH protocol banner;"):
            factory_for(lab, settings(banner_timeout=1)).open("ftd-001", JUMP)
        assert accepted(silent) == 1


def accepted(listener: socket.socket) -> int:
    """How many connections wait in the listener's queue (each a login attempt that reached it)."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1

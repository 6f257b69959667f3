"""Routes to the devices: direct (open, refused, dropped) and through the jump server, which forwards only to
the devices it can reach."""

from __future__ import annotations

import dataclasses
import socket

import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError

from tests.lab.client import CLISH_PROMPT, open_client
from tests.lab.fixtures import MakeLab

pytestmark = pytest.mark.lab


def test_mixed_scenario_routes(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=4, scenarios="mixed")
    # ftd-001: direct. ftd-003: refused directly, reachable through the jump server. ftd-004: no route at all.
    open_client(lab.target("ftd-001"), lab.known_hosts).close()
    with pytest.raises(NoValidConnectionsError, match="Unable to connect"):
        open_client(lab.target("ftd-003"), lab.known_hosts)
    with lab.shell("ftd-003", via_jump=True) as shell:
        shell.expect(CLISH_PROMPT)
    with pytest.raises((TimeoutError, socket.timeout)):
        open_client(lab.target("ftd-004"), lab.known_hosts, timeout=1.5)
    with pytest.raises(paramiko.ChannelException):
        open_client(lab.target("ftd-004"), lab.known_hosts, via=lab.target("jump-1"))
    assert not lab.connected("fmc-primary", "ftd-002")
    assert lab.connected("fmc-primary", "ftd-001")


def test_jump_server_forwards_nowhere_else(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    jump = open_client(lab.target("jump-1"), lab.known_hosts)
    transport = jump.get_transport()
    assert transport is not None
    with pytest.raises(paramiko.ChannelException):
        transport.open_channel("direct-tcpip", ("127.0.0.1", 6379), ("127.0.0.1", 0), timeout=5)
    jump.close()


def test_jump_server_is_a_plain_linux_host(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    with lab.shell("jump-1") as shell:
        shell.expect(r"operator@jump-1:~\$ $")
        shell.send("echo hi > ~/x && cat ~/x")
        assert "hi\n" in shell.expect(r"\$ $")


def test_routes_switch_while_running(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"direct": "drop", "via_jump": False}})
    with pytest.raises((TimeoutError, socket.timeout)):
        open_client(lab.target("ftd-001"), lab.known_hosts, timeout=1)
    lab.set_knobs("ftd-001", direct="refuse", via_jump=True)
    with pytest.raises(NoValidConnectionsError, match="Unable to connect"):
        open_client(lab.target("ftd-001"), lab.known_hosts)
    open_client(lab.target("ftd-001"), lab.known_hosts, via=lab.target("jump-1")).close()
    lab.set_knobs("ftd-001", direct="open")
    open_client(lab.target("ftd-001"), lab.known_hosts).close()


def test_back_door_admits_only_the_jump_server(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    back_port = lab.fleet.devices["ftd-001"].back_port
    assert back_port is not None
    with pytest.raises((paramiko.SSHException, EOFError, ConnectionError)):
        open_client(dataclasses.replace(lab.target("ftd-001"), port=back_port), lab.known_hosts)
